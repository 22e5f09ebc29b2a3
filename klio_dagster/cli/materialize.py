"""``klio-dagster materialize``: plan bottom-up against lineage, then compute: one run per page of tracks."""

from __future__ import annotations

import argparse
import sys

from klio_dagster.cli.location import load_location
from klio_dagster.cli.output import EXIT_FAILED, EXIT_OK, progress
from klio_dagster.cli.plan import add_request_arguments, planned_pages, resolve_request
from klio_dagster.cli.stream import SpooledDocument
from klio_dagster.executors.worker_forker import forker_for_runs
from klio_dagster.orchestration.runs import execute_plan
from klio_dagster.orchestration.tags import BOTTOM_UP, MODE_TAG, SOURCE_TAG

LISTS = ["computed", "computed_by_other_runs", "skipped", "failed", "pinged", "run_ids", "waited_for_runs", "missing"]


def run(args: argparse.Namespace) -> int:
    if args.ping:
        return _materialize(args)
    with forker_for_runs():  # warms local Beam workers up while the location loads and the plan is made
        return _materialize(args)


def _materialize(args: argparse.Namespace) -> int:
    loc = load_location()
    request = resolve_request(args, loc)
    step_errors: list[str] = []
    missing_examples: list[str] = []
    with SpooledDocument(LISTS) as out, progress("materialize", None) as bar:
        for work in planned_pages(loc, request):
            out["skipped"].extend([f, t] for f, t in work.skipped)
            out.rows.extend([f, t, "skipped", ""] for f, t in work.skipped)
            if args.ping:
                pinged = loc.catalogue.record_pings(work)
                out["pinged"].extend([f, t] for f, t in pinged)
                out.rows.extend([f, t, "pinged", ""] for f, t in pinged)
                continue
            if not work.to_compute:
                continue
            bar.total, done_before = (bar.total or 0) + len(work.to_compute), bar.n
            bar.refresh()
            outcome = execute_plan(
                loc.features,
                loc.job,
                loc.catalogue,
                work,
                request.force,
                tags={SOURCE_TAG: "cli", MODE_TAG: BOTTOM_UP},
                on_progress=lambda recorded, done_before=done_before: bar.update(done_before + recorded - bar.n),
                origin=loc.origin,
            )
            out["computed"].extend([f, t] for f, t in outcome.computed)
            out["computed_by_other_runs"].extend([f, t] for f, t in outcome.computed_elsewhere)
            out["failed"].extend(outcome.failed)
            out["run_ids"].extend(outcome.run_ids)
            out["waited_for_runs"].extend(outcome.waited_for)
            out["missing"].extend([f, t] for f, t in outcome.missing)
            out.rows.extend(
                [[f, t, "computed", ""] for f, t in outcome.computed]
                + [[f, t, "computed by another run", ""] for f, t in outcome.computed_elsewhere]
                + [[x["feature"], x["track"], "failed", x["error"][:80]] for x in outcome.failed]
            )
            step_errors += outcome.step_errors  # errors beyond pairs (e.g. output events not published); the results stand
            missing_examples += [f"{f}/{t}" for f, t in outcome.missing[: 10 - len(missing_examples)]]
        bar.close()
        out.emit(args.json, {}, ["feature", "track", "result", "error"])
        failed, missing = out["failed"].count, out["missing"].count
    for error in step_errors:
        print(f"error: {error}", file=sys.stderr)
    if missing:
        shown = ", ".join(missing_examples[:10])
        more = f" and {missing - 10} more" if missing > 10 else ""
        print(f"error: {missing} planned pairs were not recorded: {shown}{more}", file=sys.stderr)
    return EXIT_FAILED if failed or step_errors or missing else EXIT_OK


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "materialize", parents=[common], help="plan and compute features for tracks (bottom-up, skipping what exists)"
    )
    add_request_arguments(p)
    p.add_argument("--ping", action="store_true", help="record the plan, compute nothing")
    p.set_defaults(handler=run)
