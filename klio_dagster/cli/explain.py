"""``klio-dagster explain FEATURE TRACK``: what made one recorded output, down to the source file."""

from __future__ import annotations

import argparse
import json
import sys

from klio_dagster.cli.location import load_location
from klio_dagster.cli.output import EXIT_OK
from klio_dagster.core.tracks import validate_track_id
from klio_dagster.planning.explain import describe


def run(args: argparse.Namespace) -> int:
    loc = load_location()
    report = loc.catalogue.explain(loc.graph, args.feature, validate_track_id(args.track_id))
    if args.json:
        json.dump(report, sys.stdout, default=str)
        sys.stdout.write("\n")
    else:
        print("\n".join(describe(report)))
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "explain",
        parents=[common],
        help="provenance of one recorded output: versions, parameters, libraries, run, executor, host, inputs",
    )
    p.add_argument("feature", metavar="FEATURE")
    p.add_argument("track_id", metavar="TRACK")
    p.set_defaults(handler=run)
