"""The deployment's sensors, built with the plugin's sensor factories.

With ``KLIO_PUBSUB_SUBSCRIPTION`` set, events come from Pub/Sub; otherwise
from the embedded local queue. Either sensor runs by default.
"""

from __future__ import annotations

import os

from klio_dagster import build_local_queue_sensor, build_pubsub_sensor
from klio_dagster.orchestration.factory import SensorFactory


def ingestion_sensors() -> list[SensorFactory]:
    if os.environ.get("KLIO_PUBSUB_SUBSCRIPTION"):
        return [build_pubsub_sensor]
    return [build_local_queue_sensor]
