"""The embedded default: everything on this machine, no cloud account."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagster import EnvVar

from klio_dagster import FeatureExecutorResource, FeatureStoreResource
from klio_dagster.outputs import OutputEventsResource
from klio_dagster.priority import run_queue_config
from klio_dagster.pubsub import PubSubSourceResource
from klio_dagster.sensors import LocalQueueResource

#: The project's local data folder (instance, store, queue, demo audio).
DATA_DIR = Path(os.environ.get("KLIO_DATA", Path(__file__).resolve().parents[1] / "data"))
DEFAULTS = {
    "KLIO_DATA": DATA_DIR,
    "DAGSTER_HOME": DATA_DIR / "dagster_home",
    "KLIO_STORE": DATA_DIR / "store",
    "KLIO_QUEUE": DATA_DIR / "queue",
}
#: Instance settings for a new local DAGSTER_HOME: SQLite storage in the folder, no telemetry,
#: and a run queue where live events' runs never wait behind a backfill.
INSTANCE_CONFIG = (
    "# Written by klio-dagster's local profile (resources/local.py); edit freely, it is kept.\n"
    "telemetry:\n  enabled: false\n" + run_queue_config(max_concurrent_runs=2)
)
#: What earlier versions wrote: replaced by INSTANCE_CONFIG, since nobody edited it.
_EARLIER_INSTANCE_CONFIGS = ("telemetry:\n  enabled: false\n",)


def apply_default_environment() -> None:
    """Fill unset locations with the project's local defaults (and create the instance folder)."""
    for name, path in DEFAULTS.items():
        os.environ.setdefault(name, str(path))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() in _EARLIER_INSTANCE_CONFIGS:
        config.write_text(INSTANCE_CONFIG)


def local_resources() -> dict[str, Any]:
    apply_default_environment()
    resources: dict[str, Any] = {
        "klio_store": FeatureStoreResource(uri=EnvVar("KLIO_STORE")),
        "klio_executor": FeatureExecutorResource(mode="auto"),
        "klio_queue": LocalQueueResource(path=EnvVar("KLIO_QUEUE")),
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
        )
    return resources
