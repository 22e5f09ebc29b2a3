"""``klio-dagster demo``: generate a catalogue, ingest it through the local queue, compute, check, summarise."""

from __future__ import annotations

import argparse
import sys

from klio_dagster.cli.location import load_location
from klio_dagster.cli.output import EXIT_FAILED, EXIT_OK, emit
from klio_dagster.demo.run import run_demo


def run(args: argparse.Namespace) -> int:
    loc = load_location()
    result = run_demo(loc, n_tracks=args.tracks, duration_s=args.duration)
    emit(args, result.to_json(), result.table(), result.headers())
    if result.missing:
        print(result.missing_report(), file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo", parents=[common], help="generate a demo catalogue, ingest it through the local queue and compute everything"
    )
    p.add_argument("--tracks", type=int, default=12)
    p.add_argument("--duration", type=float, default=180.0, help="seconds per track (default: a song's length)")
    p.set_defaults(handler=run)
