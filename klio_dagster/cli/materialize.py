"""``klio-dagster materialize``: plan bottom-up against lineage, then compute in one run."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from klio_dagster.cli.location import load_location
from klio_dagster.cli.output import EXIT_FAILED, EXIT_OK, emit, progress
from klio_dagster.cli.plan import add_request_arguments, plan_request
from klio_dagster.orchestration.runs import execute_plan
from klio_dagster.orchestration.tags import BOTTOM_UP, MODE_TAG, SOURCE_TAG


def run(args: argparse.Namespace) -> int:
    loc = load_location()
    features, work = plan_request(args, loc)
    payload: dict[str, Any] = {
        "computed": [],
        "computed_by_other_runs": [],
        "skipped": [list(p) for p in work.skipped],
        "failed": [],
        "pinged": [],
        "run_ids": [],
    }
    step_errors: list[str] = []
    if args.ping:
        payload["pinged"] = [list(p) for p in loc.catalogue.record_pings(work)]
    elif work.to_compute:
        with progress("materialize", len(work.to_compute)) as bar:
            outcome = execute_plan(
                loc.features,
                loc.job,
                loc.catalogue,
                work,
                features if args.force else [],
                tags={SOURCE_TAG: "cli", MODE_TAG: BOTTOM_UP},
                on_pair_done=bar.update,
                origin=loc.origin,
            )
        payload.update(
            computed=[list(p) for p in outcome.computed],
            computed_by_other_runs=[list(p) for p in outcome.computed_elsewhere],
            failed=outcome.failed,
            run_ids=outcome.run_ids,
            waited_for_runs=outcome.waited_for,
            missing=[list(p) for p in outcome.missing],
        )
        step_errors = outcome.step_errors  # errors beyond pairs (e.g. output events not published); the results stand
    rows = (
        [[f, t, "computed", ""] for f, t in payload["computed"]]
        + [[f, t, "computed by another run", ""] for f, t in payload["computed_by_other_runs"]]
        + [[x["feature"], x["track"], "failed", x["error"][:80]] for x in payload["failed"]]
        + [[f, t, "skipped", ""] for f, t in payload["skipped"]]
        + [[f, t, "pinged", ""] for f, t in payload["pinged"]]
    )
    emit(args, payload, rows, ["feature", "track", "result", "error"])
    for error in step_errors:
        print(f"error: {error}", file=sys.stderr)
    if payload.get("missing"):
        shown = ", ".join(f"{f}/{t}" for f, t in payload["missing"][:10])
        more = f" and {len(payload['missing']) - 10} more" if len(payload["missing"]) > 10 else ""
        print(f"error: {len(payload['missing'])} planned pairs were not recorded: {shown}{more}", file=sys.stderr)
    return EXIT_FAILED if payload["failed"] or step_errors or payload.get("missing") else EXIT_OK


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "materialize", parents=[common], help="plan and compute features for tracks (bottom-up, skipping what exists)"
    )
    add_request_arguments(p)
    p.add_argument("--ping", action="store_true", help="record the plan, compute nothing")
    p.set_defaults(handler=run)
