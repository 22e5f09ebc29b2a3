"""``klio-dagster new-feature NAME``: a feature module and its test, in your location's folder."""

from __future__ import annotations

import argparse
import keyword
import os
from importlib.resources import files
from pathlib import Path
from string import Template

from klio_dagster.cli.output import EXIT_OK
from klio_dagster.core.features import RESERVED_PARAMETERS
from klio_dagster.errors import InvalidRequest


def location_folder() -> Path:
    """The folder of the location ``KLIO_DEFINITIONS`` names when it is a file, else the working directory."""
    target = os.environ.get("KLIO_DEFINITIONS", "")
    return Path(target).resolve().parent if target.endswith(".py") else Path.cwd()


def scaffold(name: str, folder: Path) -> list[Path]:
    """Write ``{name}.py`` and ``test_{name}.py`` into ``folder``; refuse to overwrite anything."""
    if not name.isidentifier() or keyword.iskeyword(name) or name in RESERVED_PARAMETERS or name.startswith("test"):
        raise InvalidRequest(
            f"{name!r} cannot name a feature: use a Python identifier (letters, digits, _) that is not a keyword, "
            f"{sorted(RESERVED_PARAMETERS)} or test*"
        )
    if not folder.is_dir():
        raise InvalidRequest(f"--dir {folder}: no such folder")
    targets = {folder / f"{name}.py": "feature.py.tmpl", folder / f"test_{name}.py": "test_feature.py.tmpl"}
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise InvalidRequest(f"{', '.join(existing)} already exist(s): nothing was written; pick another name")
    templates = files("klio_dagster.cli") / "templates"
    written: list[Path] = []
    try:
        for path, template in targets.items():
            with path.open("x") as out:  # "x": never over a file that appeared meanwhile
                written.append(path)
                out.write(Template((templates / template).read_text()).substitute(name=name))
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise InvalidRequest(f"cannot write into {folder}: {exc.strerror or exc}; nothing was written") from None
    return written


def run(args: argparse.Namespace) -> int:
    written = scaffold(args.name, Path(args.dir) if args.dir else location_folder())
    for path in written:
        print(f"wrote {path}")
    print(
        f"\nnext: add `from {args.name} import {args.name}` to your location and put {args.name} in its "
        f"FeatureGraph; run `pytest {written[1].name}` in {written[1].parent}"
    )
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("new-feature", parents=[common], help="scaffold a feature module and its test")
    p.add_argument("name", metavar="NAME", help="the feature's name (a Python identifier)")
    p.add_argument("--dir", help="where to write them (default: the folder of KLIO_DEFINITIONS' file, else here)")
    p.set_defaults(handler=run)
