"""``klio-dagster plan``: what ``materialize`` would compute and skip, without running."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from klio_dagster.cli.location import Location, load_location
from klio_dagster.cli.output import EXIT_OK, emit
from klio_dagster.core.tracks import validate_track_id, validate_track_ids
from klio_dagster.errors import InvalidRequest, InvalidTrackId
from klio_dagster.orchestration.partitions import registered_tracks
from klio_dagster.planning.lineage import plan_from_log
from klio_dagster.planning.planner import Plan


def resolve_request(args: argparse.Namespace, loc: Location) -> tuple[list[str], list[str]]:
    """The asked features (known to the location) and tracks (registered), or :class:`InvalidRequest`."""
    features = loc.graph.check_names(args.features)
    known = registered_tracks(loc.instance)
    if args.all_tracks:
        return features, known
    tracks = read_tracks_file(args.tracks_file) if args.tracks_file else validate_track_ids(args.tracks)
    unknown = sorted(set(tracks) - set(known))
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise InvalidRequest(f"track(s) not registered: {shown}; run `klio-dagster ingest` first")
    return features, tracks


def read_tracks_file(path: str) -> list[str]:
    """Track IDs from a file (``-``: standard input), one per line, as Klio jobs read them; blank lines and ``#`` comments skipped."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"--tracks-file {path}: cannot read it ({type(exc).__name__}: {exc})") from None
    tracks: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            tracks.append(validate_track_id(entry))
        except InvalidTrackId as exc:
            raise InvalidTrackId(f"--tracks-file {path}, line {number}: {exc}") from None
    if not tracks:
        raise InvalidRequest(f"--tracks-file {path} names no track IDs (one per line; # starts a comment)")
    return list(dict.fromkeys(tracks))


def plan_request(args: argparse.Namespace, loc: Location) -> tuple[list[str], Plan]:
    features, tracks = resolve_request(args, loc)
    return features, plan_from_log(loc.instance, loc.graph, features, tracks, force=features if args.force else [])


def run(args: argparse.Namespace) -> int:
    _, work = plan_request(args, load_location())
    payload = {"to_compute": [list(p) for p in work.to_compute], "skipped": [list(p) for p in work.skipped]}
    rows = [[f, t, "compute"] for f, t in work.to_compute] + [[f, t, "skip"] for f, t in work.skipped]
    emit(args, payload, rows, ["feature", "track", "decision"])
    return EXIT_OK


def add_request_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("features", nargs="+", metavar="FEATURE")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--tracks", nargs="+", metavar="ID")
    which.add_argument("--tracks-file", metavar="FILE", help="track IDs, one per line (- reads standard input)")
    which.add_argument("--all-tracks", action="store_true")
    p.add_argument("--force", action="store_true", help="recompute the named features even if current")


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("plan", parents=[common], help="show what materialize would compute and skip, without running")
    add_request_arguments(p)
    p.set_defaults(handler=run)
