"""``klio-dagster init``: create the local instance folder and its ``dagster.yaml``."""

from __future__ import annotations

import argparse
import os

from klio_dagster.cli.location import prepare_environment
from klio_dagster.cli.output import EXIT_OK, emit


def run(args: argparse.Namespace) -> int:
    prepare_environment()
    home = os.environ["DAGSTER_HOME"]
    emit(args, {"dagster_home": home}, [["DAGSTER_HOME", home]], ["setting", "value"])
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "init", parents=[common], help="create the local Dagster instance (DAGSTER_HOME, default data/dagster_home)"
    )
    p.set_defaults(handler=run)
