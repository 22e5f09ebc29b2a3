"""The Pub/Sub ingestion sensor: messages to partitions and batched runs, acknowledged after recording.

A tick acknowledges the messages that the previous tick turned into
requests (their ack IDs are in the cursor, which Dagster stores together
with that tick's partition adds and run requests), then pulls a bounded
batch, extends its ack deadline past the next tick, parses it, and returns
one ``SensorResult``. If the sensor process dies between pull and record,
the deadline lapses and Pub/Sub redelivers: the planner sees what exists,
so nothing is computed twice. Bad messages are published to the
dead-letter topic with their reason, then acknowledged.
"""

import hashlib
import json
import re

from dagster import (
    ConfigurableResource,
    DefaultSensorStatus,
    JobDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from pydantic import Field

from .features import FeatureGraph
from .ingestion import ingest_messages
from .klio_messages import parse_message
from .resources import FeatureStoreResource


class PubSubSourceResource(ConfigurableResource):
    """Where events come from (``PUBSUB_EMULATOR_HOST`` is honoured by the client)."""

    subscription: str = Field(description="projects/P/subscriptions/S (usually EnvVar('KLIO_PUBSUB_SUBSCRIPTION')).")
    dead_letter_topic: str = Field(default="", description="projects/P/topics/T for bad messages; empty: none.")
    max_messages_per_tick: int = Field(default=5_000, ge=1)
    ack_deadline_s: int = Field(default=300, ge=10, le=600, description="Held until the next tick acknowledges.")
    track_id_rule: str = Field(default="", description="Regex with a 'track_id' group for GCS object names.")

    def subscriber(self):
        from google.cloud import pubsub_v1

        return pubsub_v1.SubscriberClient()

    def publisher(self):
        from google.cloud import pubsub_v1

        return pubsub_v1.PublisherClient()


def _pull(source: PubSubSourceResource, subscriber) -> list:
    received = []
    while len(received) < source.max_messages_per_tick:
        want = min(1_000, source.max_messages_per_tick - len(received))
        response = subscriber.pull(subscription=source.subscription, max_messages=want, timeout=10)
        if not response.received_messages:
            break
        received.extend(response.received_messages)
        if len(response.received_messages) < want:
            break
    return received


def build_pubsub_sensor(graph: FeatureGraph, job: JobDefinition, *, name: str = "klio_pubsub_ingestion") -> SensorDefinition:
    """A sensor reading JSON, KlioMessage and GCS notifications from one Pub/Sub subscription."""

    @sensor(
        name=name,
        job=job,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=5,
        description="Registers tracks from Pub/Sub and launches batched feature runs.",
    )
    def _sensor(context: SensorEvaluationContext, klio_pubsub: PubSubSourceResource, klio_store: FeatureStoreResource):
        subscriber = klio_pubsub.subscriber()
        recorded = json.loads(context.cursor)["ack"] if context.cursor else []
        if recorded:
            subscriber.acknowledge(subscription=klio_pubsub.subscription, ack_ids=recorded)
        received = _pull(klio_pubsub, subscriber)
        if not received:
            return SensorResult(skip_reason=f"no messages ({len(recorded)} acknowledged)", cursor=json.dumps({"ack": []}))
        subscriber.modify_ack_deadline(
            subscription=klio_pubsub.subscription,
            ack_ids=[m.ack_id for m in received],
            ack_deadline_seconds=klio_pubsub.ack_deadline_s,
        )
        rule = re.compile(klio_pubsub.track_id_rule) if klio_pubsub.track_id_rule else None
        result, dead = ingest_messages(
            context,
            graph,
            klio_store.get_store(),
            received,
            lambda m: parse_message(m.message.data, dict(m.message.attributes), graph, track_id_rule=rule),
            run_key_prefix=hashlib.sha1("".join(sorted(m.message.message_id for m in received)).encode()).hexdigest()[:16],
            tags={"klio/source": "pubsub"},
        )
        _dead_letter(klio_pubsub, subscriber, dead, context)
        rejected = {id(m) for m, _ in dead}
        return SensorResult(
            run_requests=result.run_requests,
            dynamic_partitions_requests=result.dynamic_partitions_requests,
            cursor=json.dumps({"ack": [m.ack_id for m in received if id(m) not in rejected]}),
        )

    return _sensor


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
            future.result(timeout=30)
    else:
        for m, reason in dead:
            context.log.warning(f"message {m.message.message_id} rejected (no dead-letter topic configured): {reason}")
    subscriber.acknowledge(subscription=source.subscription, ack_ids=[m.ack_id for m, _ in dead])
