"""``klio-dagster ingest``: register files as tracks."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from klio_dagster.cli.location import load_location
from klio_dagster.cli.output import EXIT_OK, emit, progress
from klio_dagster.core.tracks import track_id_from_path, validate_track_ids
from klio_dagster.errors import InvalidRequest

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}


def expand_sources(paths: Sequence[str]) -> list[str]:
    """Files as given; directories expanded to the audio files inside; missing local files rejected."""
    found: list[str] = []
    for raw in paths:
        if raw.startswith("gs://"):
            found.append(raw)
            continue
        path = Path(raw.removeprefix("file://"))
        if path.is_dir():
            found.extend(str(p) for p in sorted(path.rglob("*")) if p.suffix.lower() in AUDIO_SUFFIXES)
        elif path.is_file():
            found.append(str(path))
        else:
            raise InvalidRequest(f"{raw}: no such file or directory")
    if not found:
        raise InvalidRequest("no audio files found in the given paths")
    return found


def run(args: argparse.Namespace) -> int:
    sources = expand_sources(args.paths)
    if args.id and len(sources) != 1:
        raise InvalidRequest("--id names one track: give exactly one file with it")
    ids = validate_track_ids([args.id] if args.id else [track_id_from_path(s) for s in sources])
    if len(ids) != len(sources):
        raise InvalidRequest("two files would get the same track ID: ingest them separately with --id")
    loc = load_location()
    with progress("ingest", len(ids)) as bar:
        registered = loc.catalogue.ingest(dict(zip(ids, sources)), bar.update)
    emit(args, {"registered": registered}, [[t, s] for t, s in zip(ids, sources)], ["track", "source"])
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ingest", parents=[common], help="register files (or directories of files) as tracks")
    p.add_argument("paths", nargs="+", metavar="PATH_OR_URI")
    p.add_argument("--id", help="track ID for a single file (default: the file name without extension)")
    p.set_defaults(handler=run)
