"""The local-queue ingestion sensor: the embedded event source, when no cloud is configured."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dagster import (
    ConfigurableResource,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from pydantic import Field

from klio_dagster.events.ingestion import Ingested, ingest_messages
from klio_dagster.events.klio_messages import parse_message
from klio_dagster.events.local_queue import LocalQueue, QueuedMessage
from klio_dagster.orchestration.resources import FeatureStoreResource, TrackSourcesResource, local_default
from klio_dagster.orchestration.run_health import clean_up_after_dead_runs
from klio_dagster.orchestration.tags import SOURCE_TAG

if TYPE_CHECKING:
    from klio_dagster.orchestration.factory import FeatureLocation
    from klio_dagster.storage.sources import SourcePolicy
    from klio_dagster.storage.stores import FeatureStore


class LocalQueueResource(ConfigurableResource):
    """The embedded local event queue (a directory), used when no cloud is configured."""

    path: str = Field(
        default="", description="Directory of the queue (usually EnvVar('KLIO_QUEUE')); empty: $KLIO_QUEUE, else ./data/queue."
    )

    def get_queue(self) -> LocalQueue:
        return LocalQueue(Path(local_default(self.path, "KLIO_QUEUE")))


def build_local_queue_sensor(
    location: FeatureLocation,
    *,
    name: str | None = None,
    max_messages_per_tick: int = 5_000,
    minimum_interval_seconds: int = 4,
) -> SensorDefinition:
    """A sensor that turns local queue messages into partitions and batched runs.

    Its cursor is the last message ID handled. Messages up to the cursor are
    deleted at the start of the next tick: the tick adds the partitions and
    Dagster stores its cursor with its run requests, so a message is
    acknowledged only after what it asked for is recorded. Bad messages go to the
    queue's dead letters with their reason. ``name`` defaults to
    ``"{asset name}_local_ingestion"``.
    """
    @sensor(
        name=name or location.sensor_name("local_ingestion"),
        job_name=location.job_name,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval_seconds,
        description="Registers tracks from the local event queue and launches batched feature runs.",
    )
    def _sensor(
        context: SensorEvaluationContext,
        klio_queue: LocalQueueResource,
        klio_store: FeatureStoreResource,
        klio_sources: TrackSourcesResource,
    ):
        result, _ = local_queue_tick(
            context, location, klio_queue.get_queue(), klio_store.get_store(), klio_sources.policy(), max_messages_per_tick
        )
        return result

    return _sensor


def local_queue_tick(
    context: SensorEvaluationContext,
    location: FeatureLocation,
    queue: LocalQueue,
    store: FeatureStore,
    policy: SourcePolicy,
    max_messages: int,
) -> tuple[SensorResult, Ingested[QueuedMessage]]:
    """One tick of the local-queue sensor (also run by ``klio-dagster consume``): its result, and what it did."""
    clean_up_after_dead_runs(context.instance, store)  # dead runs would hold claims and run-queue slots
    acked = queue.ack_through(context.cursor)
    messages = queue.pull(context.cursor, max_messages)
    if not messages:
        return SensorResult(skip_reason=f"no new messages ({acked} acknowledged)", cursor=context.cursor), Ingested()
    ingested = ingest_messages(
        context,
        location,
        store,
        messages,
        lambda m: parse_message(m.data, {}, location.graph),
        policy=policy,
        run_key_prefix=messages[-1].message_id,
        tags={SOURCE_TAG: "local-queue"},
    )
    for message, reason in ingested.dead:
        queue.dead_letter(message, reason)
    return SensorResult(run_requests=ingested.run_requests, cursor=messages[-1].message_id), ingested
