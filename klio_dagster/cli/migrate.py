"""``klio-dagster migrate-to-ledger``: move a native instance's history into the ledger tier."""

from __future__ import annotations

import argparse
import os

from klio_dagster.cli.location import load_location
from klio_dagster.cli.output import EXIT_OK, emit, progress
from klio_dagster.errors import InvalidRequest
from klio_dagster.ledger import DEFAULT_SHARDS, Ledger
from klio_dagster.tiers import SHARDS_VARIABLE, TIER_VARIABLE
from klio_dagster.tiers.ledger import default_ledger_url
from klio_dagster.tiers.migration import migrate_to_ledger


def run(args: argparse.Namespace) -> int:
    shards = args.shards if args.shards is not None else int(os.environ.get(SHARDS_VARIABLE) or DEFAULT_SHARDS)
    if shards < 1:
        raise InvalidRequest(f"--shards {shards}: give a positive number of shards")
    loc = load_location()
    ledger = Ledger(args.url or default_ledger_url(), shards)
    try:
        with progress("migrate", None) as bar:
            done = migrate_to_ledger(loc.instance, loc.store, loc.graph, ledger, on_page=lambda _, n: bar.update(n))
    finally:
        ledger.close()
    payload = {
        "ledger": ledger.engine.url.render_as_string(hide_password=True),
        "shards": shards,
        "tracks": done.tracks,
        "tracks_without_source": done.without_source,
        "pairs": done.pairs,
        "failures": done.failures,
        "pings": done.pings,
        "next": f"set {TIER_VARIABLE}=ledger and {SHARDS_VARIABLE}={shards} for every code location of this instance",
    }
    rows = [["tracks", done.tracks], *[[f"{f} pairs", n] for f, n in done.pairs.items()],
            *[[f"{f} failures", n] for f, n in done.failures.items() if n]]
    emit(args, payload, rows, ["copied", "count"])
    if not args.json:
        if done.without_source:
            print(f"\n{len(done.without_source)} registered tracks have no source record and were not copied: "
                  f"{', '.join(done.without_source[:5])}; ingest them again")
        print(f"\nnext: {payload['next']}")
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "migrate-to-ledger", parents=[common],
        help="copy this native instance's tracks and latest per-track state into the ledger tier (the event log stays)",
    )
    p.add_argument("--shards", type=int, help=f"shard count of the ledger tier (default ${SHARDS_VARIABLE}, else {DEFAULT_SHARDS})")
    p.add_argument("--url", help="the ledger's SQLAlchemy URL (default $KLIO_LEDGER_URL, else the instance's Postgres, else SQLite)")
    p.set_defaults(handler=run)
