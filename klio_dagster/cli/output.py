"""How commands print: one JSON document with ``--json``, else a table; progress on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tqdm import tqdm

#: Exit codes: all good; some (feature, track) failed or is missing while the rest were recorded;
#: bad usage or invalid input (nothing was written).
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def emit(args: argparse.Namespace, payload: Any, table: list[list[Any]], headers: list[str]) -> None:
    if args.json:
        json.dump(payload, sys.stdout, indent=None, default=str)
        sys.stdout.write("\n")
        return
    from tabulate import tabulate

    print(tabulate(table, headers=headers) if table else "(nothing)")


def progress(label: str, total: int | None) -> tqdm:
    """A progress bar on stderr, drawn only when stdout is a terminal (``total=None``: it grows as work is planned)."""
    return tqdm(total=total, desc=label, unit="pair", file=sys.stderr, disable=not sys.stdout.isatty() or total == 0)
