"""``klio-dagster status``: the state of every feature of one track."""

from __future__ import annotations

import argparse

from klio_dagster.cli.location import load_location
from klio_dagster.cli.output import EXIT_OK, emit
from klio_dagster.core.tracks import validate_track_id
from klio_dagster.errors import InvalidRequest


def run(args: argparse.Namespace) -> int:
    loc = load_location()
    track = validate_track_id(args.track_id)
    if loc.catalogue.unregistered([track]):
        raise InvalidRequest(f"track {track!r} is not registered; run `klio-dagster ingest` first")
    rows = loc.catalogue.track_status(loc.graph, track)
    table = [[r["feature"], r["state"], r.get("stored", ""), r["code_version"], r["timestamp"], r["uri"]] for r in rows]
    emit(args, rows, table, ["feature", "state", "stored", "code_version", "timestamp", "uri"])
    if not args.json:
        for row in rows:
            if row.get("why"):
                print(f"{row['feature']} is stale: {row['why']}")
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("status", parents=[common], help="state of every feature of one track")
    p.add_argument("track_id")
    p.set_defaults(handler=run)
