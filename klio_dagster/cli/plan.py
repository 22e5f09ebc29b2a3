"""``klio-dagster plan``: what ``materialize`` would compute and skip, without running.

Requests are planned in pages of :data:`PAGE_TRACKS` tracks (``--all-tracks`` reads the
catalogue in keyset pages), so memory stays flat at any catalogue size; pairs are listed in
topological order (feature, then track) within each page.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from klio_dagster.cli.location import Location, load_location
from klio_dagster.cli.output import EXIT_OK
from klio_dagster.cli.stream import SpooledDocument, SpooledList
from klio_dagster.core.tracks import validate_track_id, validate_track_ids
from klio_dagster.errors import InvalidRequest, InvalidTrackId
from klio_dagster.planning.estimate import WorkTally, estimate, header_minutes
from klio_dagster.planning.lineage import plan_pages
from klio_dagster.planning.planner import Plan
from klio_dagster.storage.registry import local_source_duration_s

#: Tracks planned (and, by materialize, run) together.
PAGE_TRACKS = 10_000


@dataclass(frozen=True)
class Request:
    """A checked request: features, how to plan them, and its tracks in pages."""

    features: list[str]
    force: list[str]
    only: list[str] | None
    pages: Callable[[], Iterator[list[str]]]
    #: The pages are every registered track (``--all-tracks``).
    whole_catalogue: bool = False


def resolve_request(args: argparse.Namespace, loc: Location) -> Request:
    """The asked features (known to the location), options and tracks (registered), or :class:`InvalidRequest`."""
    features = loc.graph.check_names(args.features)
    only = [state for state, asked in (("stale", args.stale), ("missing", args.missing)) if asked] or None
    if only and args.force:
        raise InvalidRequest("--force recomputes current pairs; --stale and --missing select pairs that are not: pick one")
    force = features if args.force else []
    if args.all_tracks:
        return Request(features, force, only, lambda: loc.catalogue.track_pages(PAGE_TRACKS), whole_catalogue=True)
    tracks = read_tracks_file(args.tracks_file) if args.tracks_file else validate_track_ids(args.tracks)
    unknown = sorted(loc.catalogue.unregistered(tracks))
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise InvalidRequest(f"track(s) not registered: {shown}; run `klio-dagster ingest` first")
    return Request(features, force, only, lambda: (tracks[i : i + PAGE_TRACKS] for i in range(0, len(tracks), PAGE_TRACKS)))


def planned_pages(loc: Location, request: Request) -> Iterator[Plan]:
    """The request planned page by page against the catalogue's lineage."""
    yield from plan_pages(
        loc.catalogue, loc.graph, request.features, request.pages(),
        whole_catalogue=request.whole_catalogue, force=request.force, only=request.only,
    )


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


def plan_estimate(loc: Location, work: WorkTally) -> dict:
    """The cost of ``work`` from past runs, for the workers the location's executor will use."""
    executor = loc.executor_resource
    beam = executor.mode == "beam" or (executor.mode == "auto" and work.tracks >= executor.beam_min_tracks)
    workers = (executor.num_workers or os.cpu_count() or 1) if beam else 1
    costs = loc.catalogue.past_costs(work.features)
    minutes = header_minutes(lambda track: local_source_duration_s(loc.catalogue.source(track)))
    windows = {f: loc.graph.window_s(f) for f in work.features}
    return estimate(work, costs, workers, audio_minutes=minutes, windows=windows, beam=beam)


def run(args: argparse.Namespace) -> int:
    loc = load_location()
    request = resolve_request(args, loc)
    work = WorkTally()
    with SpooledDocument(["to_compute", "skipped"]) as out:
        skipped_rows = SpooledList()
        for page in planned_pages(loc, request):
            work.add(page)
            out["to_compute"].extend([f, t] for f, t in page.to_compute)
            out["skipped"].extend([f, t] for f, t in page.skipped)
            out.rows.extend([f, t, "compute"] for f, t in page.to_compute)
            skipped_rows.extend([f, t, "skip"] for f, t in page.skipped)
        out.rows.extend(skipped_rows.items())
        skipped_rows.close()
        cost = plan_estimate(loc, work)
        out.emit(args.json, {"estimate": cost}, ["feature", "track", "decision"])
    if not args.json:
        print(describe_estimate(out["to_compute"].count, cost))
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
