"""``klio-dagster publish``: track events to Pub/Sub or the local queue (like ``klio message publish``)."""

from __future__ import annotations

import argparse
import os

from klio_dagster.cli.location import load_location
from klio_dagster.cli.output import EXIT_OK, emit
from klio_dagster.core.tracks import validate_track_ids
from klio_dagster.errors import InvalidRequest
from klio_dagster.events.local_queue import LocalQueue
from klio_dagster.events.messages import TrackEvent


def run(args: argparse.Namespace) -> int:
    loc = load_location()
    tracks = validate_track_ids(args.track_ids)
    if args.uri and len(tracks) != 1:
        raise InvalidRequest("--uri names one file: give exactly one track ID with it")
    features = tuple(loc.graph.check_names(args.feature or []))
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
        ids = LocalQueue(os.environ["KLIO_QUEUE"]).publish_events(events)
    published = [{"track_id": e.track_id, "message_id": i} for e, i in zip(events, ids)]
    emit(args, {"published": published}, [[p["track_id"], p["message_id"]] for p in published], ["track", "message"])
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("publish", parents=[common], help="publish track events to Pub/Sub or the local queue")
    p.add_argument("track_ids", nargs="+", metavar="TRACK_ID")
    p.add_argument("--uri", help="source file of the (single) track")
    p.add_argument(
        "--feature", action="append", metavar="FEATURE", help="ask for this feature bottom-up (repeatable); none: top-down"
    )
    p.add_argument("--force", action="store_true")
    p.add_argument("--ping", action="store_true")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--topic", metavar="PROJECT/TOPIC")
    where.add_argument("--local", action="store_true", help="the embedded local queue (the default)")
    p.set_defaults(handler=run)
