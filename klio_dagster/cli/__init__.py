"""The ``klio-dagster`` command line: one module per command.

Every command uses the Dagster instance at ``DAGSTER_HOME``, the feature
store at ``KLIO_STORE`` and the code location named by ``KLIO_DEFINITIONS``
(a module or a ``.py`` file; default: the reference location ``definitions``).
Exit codes: 0 all good, 1 some (feature, track) failed or is missing while the
rest were recorded, 2 bad usage, invalid input or a broken location (nothing
was written).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from klio_dagster.cli import (
    consume,
    demo,
    explain,
    ingest,
    init,
    k8s_values,
    materialize,
    migrate,
    new_feature,
    plan,
    publish,
    status,
)
from klio_dagster.cli.output import EXIT_USAGE
from klio_dagster.errors import KlioError

COMMANDS = (ingest, plan, materialize, consume, publish, status, explain, new_feature, demo, init, migrate, k8s_values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="klio-dagster", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Beam's local job service relays every worker's start-up warnings; keep errors only.
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KlioError as exc:
        print(f"klio-dagster: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def run() -> NoReturn:
    """The ``klio-dagster`` command: :func:`main`, then an exit without the interpreter's teardown.

    Everything a command writes is committed or flushed before :func:`main` returns; what the
    teardown would add is 0.5-0.8 s of freeing modules (numba and LLVM, Beam, Dagster) after
    the last result is out, on every command.
    """
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
