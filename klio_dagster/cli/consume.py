"""``klio-dagster consume``: drain the configured event source as the ingestion sensor does, and run what it asks here.

For running a pipeline without the Dagster daemon. Each round is one tick of
the location's ingestion sensor (Pub/Sub when the location has it, else the
local queue): the same parsing, dead letters, registration and batching, and
the same acknowledgement, after the tick that recorded a message. The runs
the tick asks for execute in this process, one after another.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from dagster import build_sensor_context

from klio_dagster.cli.location import Location, load_location
from klio_dagster.cli.output import EXIT_FAILED, EXIT_OK, emit
from klio_dagster.errors import InvalidRequest, LocationError
from klio_dagster.events.ingestion import Ingested
from klio_dagster.events.local_sensor import local_queue_tick
from klio_dagster.events.pubsub import pubsub_tick
from klio_dagster.orchestration.runs import execute_run


def _tick(loc: Location, cursor: str | None, max_messages: int) -> tuple[Any, Ingested]:
    defs, location = loc.defs, loc.features
    sensors = {s.name for s in defs.sensors or ()}
    with build_sensor_context(instance=loc.instance, cursor=cursor, definitions=defs, resources=defs.resources) as context:
        resources, store = context.resources, loc.store
        if location.sensor_name("pubsub_ingestion") in sensors:
            return pubsub_tick(context, location, resources.klio_pubsub, store, resources.klio_sources.policy())
        if location.sensor_name("local_ingestion") in sensors:
            queue = resources.klio_queue.get_queue()
            return local_queue_tick(context, location, queue, store, resources.klio_sources.policy(), max_messages)
    raise LocationError(
        f"the code location has no ingestion sensor ({location.sensor_name('local_ingestion')!r} or "
        f"{location.sensor_name('pubsub_ingestion')!r}): nothing to consume"
    )


def run(args: argparse.Namespace) -> int:
    if args.max_messages < 1 or args.interval <= 0:
        raise InvalidRequest("--max-messages must be at least 1 and --interval more than 0 seconds")
    loc = load_location()
    payload: dict[str, Any] = {"messages": 0, "registered": [], "dead_lettered": [], "computed": [], "failed": [], "run_ids": []}
    cursor: str | None = None
    try:
        while True:
            result, ingested = _tick(loc, cursor, args.max_messages)
            cursor = result.cursor
            payload["messages"] += ingested.messages
            payload["registered"] += ingested.new_tracks
            payload["dead_lettered"] += [{"message": _message_id(m), "reason": reason} for m, reason in ingested.dead]
            for request in result.run_requests:
                outcome = execute_run(loc.job, loc.catalogue, request, origin=loc.origin)
                payload["run_ids"].append(outcome.run_id)
                payload["computed"] += [list(p) for p in outcome.computed]
                payload["failed"] += outcome.failed
            if not ingested.messages:  # this tick acknowledged what the previous one recorded
                if args.once:
                    break
                time.sleep(args.interval)
    except KeyboardInterrupt:
        print("interrupted: messages not yet acknowledged are redelivered and planned again", file=sys.stderr)
    rows = (
        [["registered", t, ""] for t in payload["registered"]]
        + [["dead-lettered", d["message"], d["reason"][:100]] for d in payload["dead_lettered"]]
        + [["computed", f"{f}/{t}", ""] for f, t in payload["computed"]]
        + [["failed", f"{x['feature']}/{x['track']}", x["error"][:100]] for x in payload["failed"]]
    )
    emit(args, payload, rows, ["what", "item", "detail"])
    return EXIT_FAILED if payload["failed"] else EXIT_OK


def _message_id(message: Any) -> str:
    """A local queue message's ID, or a Pub/Sub message's."""
    return getattr(message, "message_id", None) or message.message.message_id


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "consume", parents=[common], help="drain the event source as the sensor does and run what it asks, here (no daemon)"
    )
    p.add_argument("--once", action="store_true", help="stop when the source is empty (default: keep polling)")
    p.add_argument("--interval", type=float, default=4.0, help="seconds between polls of an empty source (default 4)")
    p.add_argument("--max-messages", type=int, default=5_000, help="messages per tick of the local queue (default 5000)")
    p.set_defaults(handler=run)
