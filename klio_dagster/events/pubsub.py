"""The Pub/Sub ingestion sensor: messages to partitions and batched runs, acknowledged after recording.

A tick acknowledges the messages that the previous tick turned into
requests (their ack IDs are kept in the feature store under a name that the
cursor holds, and Dagster stores the cursor together with that tick's run
requests; the tick itself added the partitions), then pulls a bounded
batch, extends each pulled message's ack deadline past the next tick,
parses the batch, and returns one ``SensorResult``. If the sensor process
dies between pull and record, the deadline lapses and Pub/Sub redelivers:
the planner sees what exists, so nothing is computed twice. Bad messages
are published to the dead-letter topic with their reason, then
acknowledged.

Every call to Pub/Sub has a bounded retry (``call_timeout_s``), so an
unreachable service fails the tick with a clear error well inside
Dagster's sensor timeout; the cursor is then unchanged and the next tick
starts again from it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dagster import (
    ConfigurableResource,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from pydantic import Field

from klio_dagster.errors import PubSubUnavailable
from klio_dagster.events.ingestion import Ingested, ingest_messages
from klio_dagster.events.klio_messages import parse_message
from klio_dagster.orchestration.resources import FeatureStoreResource, TrackSourcesResource
from klio_dagster.orchestration.run_health import clean_up_after_dead_runs
from klio_dagster.orchestration.tags import SOURCE_TAG
from klio_dagster.storage.stores import FeatureStore

if TYPE_CHECKING:
    from klio_dagster.orchestration.factory import FeatureLocation
    from klio_dagster.storage.sources import SourcePolicy


class PubSubSourceResource(ConfigurableResource):
    """Where events come from (``PUBSUB_EMULATOR_HOST`` is honoured by the client)."""

    subscription: str = Field(description="projects/P/subscriptions/S (usually EnvVar('KLIO_PUBSUB_SUBSCRIPTION')).")
    dead_letter_topic: str = Field(default="", description="projects/P/topics/T for bad messages; empty: none.")
    max_messages_per_tick: int = Field(default=20_000, ge=1)
    max_pull_s: float = Field(default=10.0, gt=0, le=40, description="A tick stops pulling after this long.")
    ack_deadline_s: int = Field(default=300, ge=10, le=600, description="Held until the next tick acknowledges.")
    track_id_rule: str = Field(default="", description="Regex with a 'track_id' group for GCS object names.")
    call_timeout_s: float = Field(default=15.0, gt=0, le=30, description="Retry budget of each Pub/Sub call.")
    pull_wait_s: float = Field(default=2.0, gt=0, le=10, description="How long a pull waits when nothing is there.")

    def call_options(self, timeout_s: float | None = None) -> dict:
        """``retry``/``timeout`` for client calls: an unreachable service is retried for ``call_timeout_s`` at most."""
        retry = gretry.Retry(
            predicate=gretry.if_exception_type(gexc.ServiceUnavailable, gexc.InternalServerError),
            initial=0.2,
            maximum=2.0,
            timeout=self.call_timeout_s,
        )
        return {"retry": retry, "timeout": timeout_s or self.call_timeout_s}

    def subscriber(self):
        from google.cloud import pubsub_v1

        return pubsub_v1.SubscriberClient()

    def publisher(self):
        from google.cloud import pubsub_v1

        return pubsub_v1.PublisherClient()


@contextmanager
def _reported_as_unavailable(source: PubSubSourceResource) -> Iterator[None]:
    try:
        yield
    except (gexc.GoogleAPIError, TimeoutError) as exc:
        raise PubSubUnavailable(
            f"Pub/Sub call for {source.subscription} failed: {type(exc).__name__}: {exc}. This tick's messages are "
            "not acknowledged and will be redelivered; the next tick retries "
            "(check PUBSUB_EMULATOR_HOST or credentials if this persists)"
        ) from exc


def _pull(source: PubSubSourceResource, subscriber) -> list:
    """What was published before this tick began, up to ``max_messages_per_tick`` or ``max_pull_s``.

    Pulling stops at an empty pull, or once a message published after the
    tick began arrives (the backlog is caught up: later messages belong to
    the next tick, which keeps a steady stream's latency to one tick), or
    at the limits. A pull may return fewer messages than asked even with a
    backlog (the emulator returns at most 100), so its size says nothing.
    Each batch's ack deadline is extended as soon as it arrives.
    """
    received: list = []
    began, deadline = time.time(), time.monotonic() + source.max_pull_s
    while len(received) < source.max_messages_per_tick and time.monotonic() < deadline:
        want = min(1_000, source.max_messages_per_tick - len(received))
        try:
            response = subscriber.pull(
                subscription=source.subscription, max_messages=want, **source.call_options(source.pull_wait_s)
            )
        except gexc.DeadlineExceeded:  # a pull waits for messages; none came within pull_wait_s
            break
        batch = response.received_messages
        if not batch:
            break
        subscriber.modify_ack_deadline(
            subscription=source.subscription,
            ack_ids=[m.ack_id for m in batch],
            ack_deadline_seconds=source.ack_deadline_s,
            **source.call_options(),
        )
        received.extend(batch)
        if any(m.message.publish_time.timestamp() >= began for m in batch):
            break
    return received


#: Ack IDs per acknowledge request: the service rejects requests over 512 KiB (~3,000 IDs), and
#: Google's own client sends 1,000 at most.
ACK_IDS_PER_REQUEST = 1_000


def _acknowledge(source: PubSubSourceResource, subscriber, ack_ids: list[str]) -> None:
    for start in range(0, len(ack_ids), ACK_IDS_PER_REQUEST):
        chunk = ack_ids[start : start + ACK_IDS_PER_REQUEST]
        subscriber.acknowledge(subscription=source.subscription, ack_ids=chunk, **source.call_options())


def _acknowledge_recorded(source: PubSubSourceResource, subscriber, ack_ids: list[str], context: SensorEvaluationContext) -> None:
    """Acknowledge what the previous tick recorded.

    If Pub/Sub rejects the IDs (they expired, or the service restarted), the
    messages come back and are planned again: their work exists, or is in a
    queued or running run, so nothing happens twice.
    """
    if not ack_ids:
        return
    try:
        _acknowledge(source, subscriber, ack_ids)
    except (gexc.InvalidArgument, gexc.NotFound, gexc.FailedPrecondition) as exc:
        context.log.warning(f"{len(ack_ids)} recorded messages could not be acknowledged ({exc}); redeliveries will be skipped")


_PENDING_FOLDER = "_pubsub/pending-acks"


def _pending_folder(subscription: str) -> str:
    """Where the ack IDs of ``subscription``'s ticks are kept, apart from other subscriptions'."""
    return f"{_PENDING_FOLDER}/{hashlib.sha1(subscription.encode()).hexdigest()[:16]}"


def _keep_pending(store: FeatureStore, folder: str, ack_ids: list[str]) -> str:
    """Store a tick's ack IDs beside the features; the cursor names them.

    A tick of 20,000 messages has megabytes of ack IDs: kept in the cursor,
    they would be written into Dagster's tick history on every tick.
    """
    name = f"{folder}/{uuid.uuid4().hex}"
    store.write_bytes(f"{name}/ack_ids.json", json.dumps(ack_ids).encode())
    return name


def _pending_ack_ids(store: FeatureStore, cursor: str | None) -> list[str]:
    """The ack IDs the previous tick recorded."""
    name = json.loads(cursor).get("pending") if cursor else None
    if not name:
        return []
    try:
        return json.loads(store.read_bytes(f"{name}/ack_ids.json"))
    except FileNotFoundError:  # acknowledged by a tick whose cursor was not stored: redelivered, skipped
        return []


def build_pubsub_sensor(location: FeatureLocation, *, name: str | None = None) -> SensorDefinition:
    """A sensor reading JSON, KlioMessage and GCS notifications from one Pub/Sub subscription.

    ``name`` defaults to ``"{asset name}_pubsub_ingestion"``.
    """
    @sensor(
        name=name or location.sensor_name("pubsub_ingestion"),
        job_name=location.job_name,
        default_status=DefaultSensorStatus.RUNNING,
        # Under the daemon's 5 s loop, so that timing jitter never skips a loop (a 10 s gap).
        minimum_interval_seconds=4,
        description="Registers tracks from Pub/Sub and launches batched feature runs.",
    )
    def _sensor(
        context: SensorEvaluationContext,
        klio_pubsub: PubSubSourceResource,
        klio_store: FeatureStoreResource,
        klio_sources: TrackSourcesResource,
    ):
        result, _ = pubsub_tick(context, location, klio_pubsub, klio_store.get_store(), klio_sources.policy())
        return result

    return _sensor


def pubsub_tick(
    context: SensorEvaluationContext,
    location: FeatureLocation,
    source: PubSubSourceResource,
    store: FeatureStore,
    policy: SourcePolicy,
) -> tuple[SensorResult, Ingested]:
    """One tick of the Pub/Sub sensor (also run by ``klio-dagster consume``): its result, and what it did."""
    subscriber = source.subscriber()
    clean_up_after_dead_runs(context.instance, store)  # dead runs would hold claims and run-queue slots
    pending_folder = _pending_folder(source.subscription)
    recorded = _pending_ack_ids(store, context.cursor)
    with _reported_as_unavailable(source):
        _acknowledge_recorded(source, subscriber, recorded, context)
        # What the cursor named is acknowledged now; anything else was left by a tick whose
        # cursor Dagster never stored (its messages are redelivered): all of it can go.
        store.delete_folder(pending_folder)
        received = _pull(source, subscriber)
    if not received:
        skip = SensorResult(skip_reason=f"no messages ({len(recorded)} acknowledged)", cursor=json.dumps({"pending": None}))
        return skip, Ingested()
    rule = re.compile(source.track_id_rule) if source.track_id_rule else None
    ingested = ingest_messages(
        context,
        location,
        store,
        received,
        lambda m: parse_message(m.message.data, dict(m.message.attributes), location.graph, track_id_rule=rule),
        policy=policy,
        run_key_prefix=hashlib.sha1("".join(sorted(m.message.message_id for m in received)).encode()).hexdigest()[:16],
        tags={SOURCE_TAG: "pubsub"},
    )
    with _reported_as_unavailable(source):
        _dead_letter(source, subscriber, ingested.dead, context)
    rejected = {id(m) for m, _ in ingested.dead}
    pending = _keep_pending(store, pending_folder, [m.ack_id for m in received if id(m) not in rejected])
    return SensorResult(run_requests=ingested.run_requests, cursor=json.dumps({"pending": pending})), ingested


def _dead_letter(source: PubSubSourceResource, subscriber, dead: list, context: SensorEvaluationContext) -> None:
    """Publish each bad message with its reason, then acknowledge it."""
    if not dead:
        return
    if source.dead_letter_topic:
        publisher = source.publisher()
        futures = [
            publisher.publish(source.dead_letter_topic, m.message.data, reason=reason[:1024], message_id=m.message.message_id)
            for m, reason in dead
        ]
        for future in futures:
            future.result(timeout=source.call_timeout_s)
    else:
        for m, reason in dead:
            context.log.warning(f"message {m.message.message_id} rejected (no dead-letter topic configured): {reason}")
    _acknowledge(source, subscriber, [m.ack_id for m, _ in dead])
