"""The ``klio-dagster`` command line.

Every command uses the Dagster instance at ``DAGSTER_HOME``, the feature
store at ``KLIO_STORE`` and the code location named by ``KLIO_DEFINITIONS``
(default: the reference location ``definitions``). Exit codes: 0 all good,
1 some (feature, track) failed while the rest were recorded, 2 bad usage or
invalid input (nothing was written).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, Definitions, JobDefinition

from .errors import InvalidRequest, KlioError
from .features import FeatureGraph
from .storage import FeatureStore
from .tracks import ingest, registered_tracks, track_id_from_path, validate_track_ids

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}


@dataclass
class Location:
    """What the CLI needs from a code location."""

    defs: Definitions
    graph: FeatureGraph
    job: JobDefinition
    instance: DagsterInstance
    store: FeatureStore


def load_location(module_name: str | None = None) -> Location:
    module = importlib.import_module(module_name or os.environ.get("KLIO_DEFINITIONS", "definitions"))
    if not os.environ.get("DAGSTER_HOME"):
        raise InvalidRequest("DAGSTER_HOME is not set: point it at the Dagster instance folder")
    defs: Definitions = module.defs
    with defs.resources["klio_store"].process_config_and_initialize_cm() as store_resource:
        store = store_resource.get_store()
    job = defs.resolve_job_def(module.features_job.name)
    return Location(defs, module.feature_graph, job, DagsterInstance.get(), store)


# ---------------------------------------------------------------- output


def _emit(args: argparse.Namespace, payload: Any, table: list[list[Any]], headers: list[str]) -> None:
    if args.json:
        json.dump(payload, sys.stdout, indent=None, default=str)
        sys.stdout.write("\n")
        return
    from tabulate import tabulate

    print(tabulate(table, headers=headers) if table else "(nothing)")


class Progress:
    """A one-line progress bar on stderr, drawn only when stdout is a terminal."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done = label, total, 0
        self.enabled = sys.stdout.isatty() and total > 0

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / self.total)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


# ---------------------------------------------------------------- commands


def _expand_sources(paths: Sequence[str]) -> list[str]:
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


def cmd_ingest(args: argparse.Namespace) -> int:
    sources = _expand_sources(args.paths)
    if args.id and len(sources) != 1:
        raise InvalidRequest("--id names one track: give exactly one file with it")
    ids = [args.id] if args.id else [track_id_from_path(s) for s in sources]
    ids = validate_track_ids(ids)
    if len(ids) != len(sources):
        raise InvalidRequest("two files would get the same track ID: ingest them separately with --id")
    loc = load_location()
    registered = ingest(loc.instance, loc.store, dict(zip(ids, sources)), Progress("ingest", len(ids)).advance)
    _emit(args, {"registered": registered}, [[t, s] for t, s in zip(ids, sources)], ["track", "source"])
    return EXIT_OK


def _resolve_request(args: argparse.Namespace, loc: Location) -> tuple[list[str], list[str]]:
    try:
        features = loc.graph.check_names(args.features)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    known = registered_tracks(loc.instance)
    if args.all_tracks:
        return features, known
    tracks = validate_track_ids(args.tracks)
    unknown = sorted(set(tracks) - set(known))
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise InvalidRequest(f"track(s) not registered: {shown}; run `klio-dagster ingest` first")
    return features, tracks


def _plan(args: argparse.Namespace, loc: Location):
    from .lineage import plan_from_log

    features, tracks = _resolve_request(args, loc)
    return features, plan_from_log(loc.instance, loc.graph, features, tracks, force=features if args.force else [])


def cmd_plan(args: argparse.Namespace) -> int:
    loc = load_location()
    _, work = _plan(args, loc)
    payload = {"to_compute": [list(p) for p in work.to_compute], "skipped": [list(p) for p in work.skipped]}
    rows = [[f, t, "compute"] for f, t in work.to_compute] + [[f, t, "skip"] for f, t in work.skipped]
    _emit(args, payload, rows, ["feature", "track", "decision"])
    return EXIT_OK


def cmd_materialize(args: argparse.Namespace) -> int:
    from .runs import BOTTOM_UP, MODE_TAG, execute_run, record_ping, run_request_for

    loc = load_location()
    features, work = _plan(args, loc)
    payload: dict[str, Any] = {"computed": [], "skipped": [list(p) for p in work.skipped], "failed": [], "pinged": [], "run_ids": []}
    step_errors: list[str] = []
    if args.ping:
        payload["pinged"] = [list(p) for p in record_ping(loc.instance, work)]
    elif work.to_compute:
        request = run_request_for(
            loc.graph, work, features if args.force else [], run_key=None, tags={"klio/source": "cli", MODE_TAG: BOTTOM_UP}
        )
        progress = Progress("materialize", len(work.to_compute))
        outcome = execute_run(loc.job, loc.instance, request, on_pair_done=progress.advance)
        payload.update(computed=[list(p) for p in outcome.computed], failed=outcome.failed, run_ids=[outcome.run_id])
        if not outcome.failed:  # errors beyond pairs (e.g. output events not published); the results stand
            step_errors = outcome.step_errors
    rows = (
        [[f, t, "computed", ""] for f, t in payload["computed"]]
        + [[x["feature"], x["track"], "failed", x["error"][:80]] for x in payload["failed"]]
        + [[f, t, "skipped", ""] for f, t in payload["skipped"]]
        + [[f, t, "pinged", ""] for f, t in payload["pinged"]]
    )
    _emit(args, payload, rows, ["feature", "track", "result", "error"])
    for error in step_errors:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_FAILED if payload["failed"] or step_errors else EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from .status import track_status

    loc = load_location()
    (track,) = validate_track_ids([args.track_id])
    if track not in set(registered_tracks(loc.instance)):
        raise InvalidRequest(f"track {track!r} is not registered; run `klio-dagster ingest` first")
    rows = track_status(loc.instance, loc.graph, loc.store, track)
    _emit(args, rows, [[r["feature"], r["state"], r["code_version"], r["timestamp"], r["uri"]] for r in rows],
          ["feature", "state", "code_version", "timestamp", "uri"])
    return EXIT_OK


def cmd_publish(args: argparse.Namespace) -> int:
    from .events import TrackEvent

    loc = load_location()
    tracks = validate_track_ids(args.track_ids)
    if args.uri and len(tracks) != 1:
        raise InvalidRequest("--uri names one file: give exactly one track ID with it")
    try:
        features = tuple(loc.graph.check_names(args.feature or []))
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    events = [TrackEvent(t, args.uri, features, args.force, args.ping) for t in tracks]
    if args.topic:
        project, _, topic = args.topic.partition("/")
        if not (project and topic) or "/" in topic:
            raise InvalidRequest(f"--topic {args.topic!r}: use PROJECT/TOPIC")
        from google.cloud import pubsub_v1

        publisher = pubsub_v1.PublisherClient()
        futures = [publisher.publish(f"projects/{project}/topics/{topic}", e.to_json()) for e in events]
        ids = [f.result(timeout=60) for f in futures]
    else:
        from .local_queue import LocalQueue

        ids = LocalQueue(os.environ["KLIO_QUEUE"]).publish_events(events)
    published = [{"track_id": e.track_id, "message_id": i} for e, i in zip(events, ids)]
    _emit(args, {"published": published}, [[p["track_id"], p["message_id"]] for p in published], ["track", "message"])
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    loc = load_location()
    rows = run_demo(loc.defs, loc.graph, loc.job, loc.instance, loc.store, n_tracks=args.tracks, duration_s=args.duration)
    _emit(args, rows, [list(r.values()) for r in rows], list(rows[0]) if rows else [])
    return EXIT_FAILED if any(r["failed"] for r in rows) else EXIT_OK


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="klio-dagster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        return p

    p = command("ingest", "register files (or directories of files) as tracks")
    p.add_argument("paths", nargs="+", metavar="PATH_OR_URI")
    p.add_argument("--id", help="track ID for a single file (default: the file name without extension)")
    p.set_defaults(handler=cmd_ingest)

    for name, handler, help_text in (
        ("materialize", cmd_materialize, "plan and compute features for tracks (bottom-up, skipping what exists)"),
        ("plan", cmd_plan, "show what materialize would compute and skip, without running"),
    ):
        p = command(name, help_text)
        p.add_argument("features", nargs="+", metavar="FEATURE")
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--tracks", nargs="+", metavar="ID")
        which.add_argument("--all-tracks", action="store_true")
        p.add_argument("--force", action="store_true", help="recompute the named features even if current")
        if name == "materialize":
            p.add_argument("--ping", action="store_true", help="record the plan, compute nothing")
        p.set_defaults(handler=handler, ping=False)

    p = command("publish", "publish track events (like `klio message publish`) to Pub/Sub or the local queue")
    p.add_argument("track_ids", nargs="+", metavar="TRACK_ID")
    p.add_argument("--uri", help="source file of the (single) track")
    p.add_argument("--feature", action="append", metavar="FEATURE", help="ask for this feature bottom-up (repeatable); none: top-down")
    p.add_argument("--force", action="store_true")
    p.add_argument("--ping", action="store_true")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--topic", metavar="PROJECT/TOPIC")
    where.add_argument("--local", action="store_true", help="the embedded local queue (the default)")
    p.set_defaults(handler=cmd_publish)

    p = command("status", "state of every feature of one track")
    p.add_argument("track_id")
    p.set_defaults(handler=cmd_status)

    p = command("demo", "generate a demo catalogue, ingest it through the local queue and compute everything")
    p.add_argument("--tracks", type=int, default=12)
    p.add_argument("--duration", type=float, default=180.0, help="seconds per track (default: a song's length)")
    p.set_defaults(handler=cmd_demo)
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


if __name__ == "__main__":
    sys.exit(main())
