"""The embedded default: everything on this machine, no cloud account.

Loading this profile has no side effects: it reads the environment and
writes nothing (``klio-dagster init``, or any command, creates the local
instance). Unset locations resolve when the resources are used: to the
variable then, else to ``./data`` under the working directory, never to the
installed package's folder.
"""

from __future__ import annotations

import os
from typing import Any

from dagster import EnvVar

from klio_dagster import (
    FeatureExecutorResource,
    FeatureStoreResource,
    LocalQueueResource,
    OutputEventsResource,
    TrackSourcesResource,
)
from klio_dagster.events.pubsub import PubSubSourceResource


def env_or_default(name: str) -> str | EnvVar:
    """``EnvVar(name)`` when set (the UI shows where the value comes from), else empty: the resource then
    reads the variable when it is used, or falls back to ``./data`` (``$KLIO_DATA``)."""
    return EnvVar(name) if os.environ.get(name) else ""


def local_resources() -> dict[str, Any]:
    resources: dict[str, Any] = {
        "klio_store": FeatureStoreResource(uri=env_or_default("KLIO_STORE")),
        "klio_executor": FeatureExecutorResource(mode="auto"),
        "klio_queue": LocalQueueResource(path=env_or_default("KLIO_QUEUE")),
        "klio_sources": TrackSourcesResource(
            allowed_roots=env_or_default("KLIO_ALLOWED_SOURCES"),
            **({"max_duration_s": float(os.environ["KLIO_MAX_TRACK_SECONDS"])} if os.environ.get("KLIO_MAX_TRACK_SECONDS") else {}),
        ),
        "klio_output": OutputEventsResource(
            topic=os.environ.get("KLIO_PUBSUB_OUTPUT_TOPIC", ""),
            local_queue=os.environ.get("KLIO_OUTPUT_QUEUE", ""),
            message_format=os.environ.get("KLIO_OUTPUT_FORMAT", "json"),
        ),
    }
    if os.environ.get("KLIO_PUBSUB_SUBSCRIPTION"):
        resources["klio_pubsub"] = PubSubSourceResource(
            subscription=EnvVar("KLIO_PUBSUB_SUBSCRIPTION"),
            dead_letter_topic=os.environ.get("KLIO_PUBSUB_DEAD_LETTER_TOPIC", ""),
            **({"ack_deadline_s": int(os.environ["KLIO_PUBSUB_ACK_DEADLINE_S"])} if os.environ.get("KLIO_PUBSUB_ACK_DEADLINE_S") else {}),
        )
    return resources
