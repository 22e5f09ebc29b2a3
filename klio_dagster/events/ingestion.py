"""From parsed track events to partitions, source records and batched runs.

Shared by every event source (the local queue now, Pub/Sub next): only
where messages come from differs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Generic, TypeVar

from dagster import RunRequest, SensorEvaluationContext

from klio_dagster.core.features import AUDIO
from klio_dagster.errors import InvalidMessage, InvalidSourceUri
from klio_dagster.events.messages import TrackEvent
from klio_dagster.events.priority import LIVE_PRIORITY_TAGS
from klio_dagster.orchestration.runs import pairs_in_flight, run_request_for
from klio_dagster.orchestration.tags import BOTTOM_UP, MODE_TAG, TOP_DOWN
from klio_dagster.planning.lineage import plan_against
from klio_dagster.planning.planner import Pair, Plan
from klio_dagster.storage.sources import SourcePolicy
from klio_dagster.storage.stores import FeatureStore

if TYPE_CHECKING:
    from klio_dagster.orchestration.factory import FeatureLocation
    from klio_dagster.tiers.base import Catalogue

M = TypeVar("M")


@dataclass
class IngestionBatch:
    """What a batch of events asks Dagster to record."""

    new_tracks: list[str] = field(default_factory=list)
    run_requests: list[RunRequest] = field(default_factory=list)
    pinged: list[Pair] = field(default_factory=list)
    rejected: list[tuple[TrackEvent, str]] = field(default_factory=list)


#: Failures that one message's content can cause while it is planned: that message is dead-lettered.
#: Anything else (the instance or the store unreachable) fails the tick, and the batch is redelivered.
MESSAGE_ERRORS = (ValueError, TypeError, LookupError, RecursionError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (InvalidMessage, InvalidSourceUri)):
        return str(exc)
    return f"{type(exc).__name__} while handling the message: {exc}"[:1000]


def plan_events(
    catalogue: Catalogue,
    location: FeatureLocation,
    events: Sequence[TrackEvent],
    *,
    policy: SourcePolicy,
    run_key_prefix: str,
    tags: dict[str, str],
    dry_run: bool = False,
) -> IngestionBatch:
    """Group events into one run request per (features, force) set, then record sources and add partitions.

    An event's ``uri`` must be admitted by ``policy`` (allowed roots, regular
    file, size), else the event is rejected with the reason.

    Events for tracks with neither a ``uri`` nor a registered source (before
    or in the same batch) are rejected with a reason, for the dead-letter
    destination. Pairs that are already current, or that a queued or running
    live run will make current, produce no run (unless forced), so duplicate
    and redelivered events make no second run and compute nothing twice.
    """
    batch, graph = IngestionBatch(), location.graph
    known_sources = catalogue.with_sources(list(dict.fromkeys(e.track_id for e in events)))
    new_sources: dict[str, str] = {}
    bad_uri: set[int] = set()
    for event in events:
        if event.uri:
            try:
                new_sources[event.track_id] = policy.admit(event.uri)
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

    in_flight = pairs_in_flight(catalogue)
    pings: list[Plan] = []
    groups: dict[tuple[tuple[str, ...], bool, bool], list[str]] = defaultdict(list)
    for event in accepted:
        groups[(event.features, event.force, event.ping)].append(event.track_id)
    for i, ((features, force, ping), tracks) in enumerate(sorted(groups.items())):
        requested = list(features) if features else graph.descendants([AUDIO])
        tracks = list(dict.fromkeys(tracks))
        forced = requested if force else []
        work = plan_against(catalogue, graph, requested, tracks, force=forced)
        if ping:
            pings.append(work)
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
    if dry_run:
        return batch
    # Written only once the whole batch is planned, so that a batch that fails to plan writes nothing.
    # Tracks are registered here, in chunks, not through SensorResult.dynamic_partitions_requests:
    # for those, Dagster's sensor daemon queries each key on its own (~1.4 ms a key, 28 s for a
    # 20,000-message tick). Registering is idempotent, so a tick that fails after it loses nothing.
    batch.new_tracks = catalogue.register(new_sources, from_event=True)
    batch.new_tracks += catalogue.register_recorded([t for t in dict.fromkeys(e.track_id for e in accepted) if t not in new_sources])
    for work in pings:
        batch.pinged.extend(catalogue.record_pings(work))
    return batch


@dataclass
class Ingested(Generic[M]):
    """What one tick did with its messages: new tracks, run requests, pinged pairs, dead letters with reasons."""

    messages: int = 0
    new_tracks: list[str] = field(default_factory=list)
    run_requests: list[RunRequest] = field(default_factory=list)
    pinged: list[Pair] = field(default_factory=list)
    dead: list[tuple[M, str]] = field(default_factory=list)


def _plan_isolated(plan: Callable[..., IngestionBatch], events: Sequence[TrackEvent], run_key_prefix: str) -> IngestionBatch:
    """Plan the batch at once; if an event breaks that, find the ones that fail alone, reject them, plan the rest.

    Each event is tried alone as a dry run (nothing written), so this costs
    time only in this rare case.
    """
    try:
        return plan(events, run_key_prefix=run_key_prefix)
    except MESSAGE_ERRORS:
        if len(events) == 1:
            raise
    rejected: list[tuple[TrackEvent, str]] = []
    good: list[TrackEvent] = []
    for event in events:
        try:
            plan([event], run_key_prefix="", dry_run=True)
        except MESSAGE_ERRORS as exc:
            rejected.append((event, _reason(exc)))
            continue
        good.append(event)
    batch = plan(good, run_key_prefix=run_key_prefix)
    batch.rejected += rejected
    return batch


def ingest_messages(
    context: SensorEvaluationContext,
    location: FeatureLocation,
    store: FeatureStore,
    messages: Sequence[M],
    parse: Callable[[M], TrackEvent],
    *,
    policy: SourcePolicy,
    run_key_prefix: str,
    tags: dict[str, str],
) -> Ingested[M]:
    """Parse, register and plan a batch of messages from any source.

    Any failure while parsing or planning one message dead-letters that
    message with its reason and lets the rest of the batch through. Returns
    the tick's run requests (the caller returns them with its cursor) and
    every bad message with its reason, for the source's dead-letter destination.
    """
    events: list[TrackEvent] = []
    message_of: dict[int, M] = {}
    dead: list[tuple[M, str]] = []
    for message in messages:
        try:
            event = parse(message)
        except Exception as exc:  # noqa: BLE001 - whatever one message does, only that message is dead-lettered
            dead.append((message, _reason(exc)))
            continue
        message_of[id(event)] = message
        events.append(event)
    plan = partial(plan_events, location.tier.open(context.instance, store), location, policy=policy, tags=tags)
    batch = _plan_isolated(plan, events, run_key_prefix)
    dead.extend((message_of[id(event)], reason) for event, reason in batch.rejected)
    context.log.info(
        f"{len(messages)} messages: {len(batch.new_tracks)} new tracks, {len(batch.run_requests)} runs, "
        f"{len(batch.pinged)} pairs pinged, {len(dead)} dead letters"
    )
    return Ingested(len(messages), batch.new_tracks, batch.run_requests, batch.pinged, dead)
