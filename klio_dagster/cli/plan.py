"""``klio-dagster plan``: what ``materialize`` would compute and skip, without running."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from klio_dagster.cli.location import Location, load_location
from klio_dagster.cli.output import EXIT_OK, emit
from klio_dagster.core.tracks import validate_track_id, validate_track_ids
from klio_dagster.errors import InvalidRequest, InvalidTrackId
from klio_dagster.planning.estimate import estimate, header_minutes, past_costs
from klio_dagster.planning.lineage import plan_against
from klio_dagster.planning.planner import Plan
from klio_dagster.storage.registry import local_source_duration_s

#: Tracks read per page when a command names all of them.
ALL_TRACKS_PAGE = 10_000


def resolve_request(args: argparse.Namespace, loc: Location) -> tuple[list[str], list[str]]:
    """The asked features (known to the location) and tracks (registered), or :class:`InvalidRequest`."""
    features = loc.graph.check_names(args.features)
    if args.all_tracks:
        return features, [t for page in loc.catalogue.track_pages(ALL_TRACKS_PAGE) for t in page]
    tracks = read_tracks_file(args.tracks_file) if args.tracks_file else validate_track_ids(args.tracks)
    unknown = sorted(loc.catalogue.unregistered(tracks))
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
    only = [state for state, asked in (("stale", args.stale), ("missing", args.missing)) if asked] or None
    if only and args.force:
        raise InvalidRequest("--force recomputes current pairs; --stale and --missing select pairs that are not: pick one")
    work = plan_against(loc.catalogue, loc.graph, features, tracks, force=features if args.force else [], only=only)
    return features, work


def plan_estimate(loc: Location, work: Plan) -> dict:
    """The cost of ``work`` from past runs, for the workers the location's executor will use."""
    n_tracks = len({t for _, t in work.to_compute})
    executor = loc.executor_resource
    beam = executor.mode == "beam" or (executor.mode == "auto" and n_tracks >= executor.beam_min_tracks)
    workers = (executor.num_workers or os.cpu_count() or 1) if beam else 1
    costs = past_costs(loc.instance, work.features)
    minutes = header_minutes(lambda track: local_source_duration_s(loc.catalogue.source(track)))
    windows = {f: loc.graph.window_s(f) for f in work.features}
    return estimate(work, costs, workers, audio_minutes=minutes, windows=windows, beam=beam)


def run(args: argparse.Namespace) -> int:
    loc = load_location()
    _, work = plan_request(args, loc)
    cost = plan_estimate(loc, work)
    payload = {"to_compute": [list(p) for p in work.to_compute], "skipped": [list(p) for p in work.skipped], "estimate": cost}
    rows = [[f, t, "compute"] for f, t in work.to_compute] + [[f, t, "skip"] for f, t in work.skipped]
    emit(args, payload, rows, ["feature", "track", "decision"])
    if not args.json:
        print(describe_estimate(len(work.to_compute), cost))
    return EXIT_OK


def describe_estimate(pairs: int, cost: dict) -> str:
    """The estimate in a sentence or two, for people."""
    if not pairs:
        return "\nnothing to compute"
    text = (
        f"\n{pairs} pairs to compute: about {cost['cpu_s']:,.1f} CPU s, {cost['wall_s']:,.1f} s wall-clock "
        f"on {cost['workers']} worker{'s' if cost['workers'] > 1 else ''} (from the compute time past runs recorded)"
    )
    if cost["unmeasured"]:
        text += f"\nnever computed before, so not counted: {', '.join(cost['unmeasured'])}"
    return text


def add_request_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("features", nargs="+", metavar="FEATURE")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--tracks", nargs="+", metavar="ID")
    which.add_argument("--tracks-file", metavar="FILE", help="track IDs, one per line (- reads standard input)")
    which.add_argument("--all-tracks", action="store_true")
    p.add_argument("--force", action="store_true", help="recompute the named features even if current")
    p.add_argument("--stale", action="store_true", help="only the pairs of the named features that are stale (and what they need)")
    p.add_argument("--missing", action="store_true", help="only the pairs of the named features that are missing (and what they need)")


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("plan", parents=[common], help="show what materialize would compute and skip, without running")
    add_request_arguments(p)
    p.set_defaults(handler=run)
