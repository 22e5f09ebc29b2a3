"""From parsed track events to partitions, source records and batched runs.

Shared by every event source (the local queue now, Pub/Sub next): only
where messages come from differs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from dagster import DagsterInstance, RunRequest, SensorEvaluationContext

from klio_dagster.core.features import AUDIO
from klio_dagster.errors import InvalidMessage, InvalidSourceUri
from klio_dagster.events.messages import TrackEvent
from klio_dagster.events.priority import LIVE_PRIORITY_TAGS
from klio_dagster.orchestration.partitions import register_tracks
from klio_dagster.orchestration.runs import pairs_in_flight, record_ping, run_request_for
from klio_dagster.orchestration.tags import BOTTOM_UP, MODE_TAG, TOP_DOWN
from klio_dagster.planning.lineage import plan_from_log
from klio_dagster.planning.planner import Pair
from klio_dagster.storage.registry import record_sources, tracks_with_sources
from klio_dagster.storage.sources import normalize_source_uri
from klio_dagster.storage.stores import FeatureStore

if TYPE_CHECKING:
    from klio_dagster.orchestration.factory import FeatureLocation

M = TypeVar("M")


@dataclass
class IngestionBatch:
    """What a batch of events asks Dagster to record."""

    new_tracks: list[str] = field(default_factory=list)
    run_requests: list[RunRequest] = field(default_factory=list)
    pinged: list[Pair] = field(default_factory=list)
    rejected: list[tuple[TrackEvent, str]] = field(default_factory=list)


def plan_events(
    instance: DagsterInstance,
    location: FeatureLocation,
    store: FeatureStore,
    events: Sequence[TrackEvent],
    *,
    run_key_prefix: str,
    tags: dict[str, str],
) -> IngestionBatch:
    """Record sources, add partitions, then group events into one run request per (features, force) set.

    Events for tracks with neither a ``uri`` nor a registered source (before
    or in the same batch) are rejected with a reason, for the dead-letter
    destination. Pairs that are already current, or that a queued or running
    live run will make current, produce no run (unless forced), so duplicate
    and redelivered events make no second run and compute nothing twice.
    """
    batch, graph = IngestionBatch(), location.graph
    known_sources = tracks_with_sources(store)
    new_sources: dict[str, str] = {}
    bad_uri: set[int] = set()
    for event in events:
        if event.uri:
            try:
                new_sources[event.track_id] = normalize_source_uri(event.uri)
            except InvalidSourceUri as exc:
                batch.rejected.append((event, str(exc)))
                bad_uri.add(id(event))
    registered = known_sources | new_sources.keys()
    accepted: list[TrackEvent] = []
    for event in events:
        if id(event) in bad_uri:
            continue
        if event.track_id in registered:
            accepted.append(event)
        else:
            batch.rejected.append((event, f"track {event.track_id!r} has no registered source: add 'uri' to the message"))
    record_sources(store, new_sources)
    # Partitions are added here, in chunks, not through SensorResult.dynamic_partitions_requests:
    # for those, Dagster's sensor daemon queries each key on its own (~1.4 ms a key, 28 s for a
    # 20,000-message tick). Adding is idempotent, so a tick that fails after it loses nothing.
    batch.new_tracks = register_tracks(instance, list(dict.fromkeys(e.track_id for e in accepted)))

    in_flight = pairs_in_flight(instance)
    groups: dict[tuple[tuple[str, ...], bool, bool], list[str]] = defaultdict(list)
    for event in accepted:
        groups[(event.features, event.force, event.ping)].append(event.track_id)
    for i, ((features, force, ping), tracks) in enumerate(sorted(groups.items())):
        requested = list(features) if features else graph.descendants([AUDIO])
        tracks = list(dict.fromkeys(tracks))
        forced = requested if force else []
        work = plan_from_log(instance, graph, requested, tracks, force=forced)
        if ping:
            batch.pinged.extend(record_ping(instance, work))
            continue
        if not force:
            work = work.without(in_flight)
        if work.to_compute:
            batch.run_requests.append(
                run_request_for(
                    location,
                    work,
                    forced,
                    run_key=f"{run_key_prefix}-{i}",
                    tags={**tags, **LIVE_PRIORITY_TAGS, MODE_TAG: BOTTOM_UP if features else TOP_DOWN},
                )
            )
    return batch


def ingest_messages(
    context: SensorEvaluationContext,
    location: FeatureLocation,
    store: FeatureStore,
    messages: Sequence[M],
    parse: Callable[[M], TrackEvent],
    *,
    run_key_prefix: str,
    tags: dict[str, str],
) -> tuple[list[RunRequest], list[tuple[M, str]]]:
    """Parse, register and plan a batch of messages from any source.

    Returns the tick's run requests (the caller returns them with its
    cursor) and every bad message with its reason, for the source's
    dead-letter destination.
    """
    events: list[TrackEvent] = []
    message_of: dict[int, M] = {}
    dead: list[tuple[M, str]] = []
    for message in messages:
        try:
            event = parse(message)
        except InvalidMessage as exc:
            dead.append((message, str(exc)))
            continue
        message_of[id(event)] = message
        events.append(event)
    batch = plan_events(context.instance, location, store, events, run_key_prefix=run_key_prefix, tags=tags)
    dead.extend((message_of[id(event)], reason) for event, reason in batch.rejected)
    context.log.info(
        f"{len(messages)} messages: {len(batch.new_tracks)} new tracks, {len(batch.run_requests)} runs, "
        f"{len(batch.pinged)} pairs pinged, {len(dead)} dead letters"
    )
    return batch.run_requests, dead
