"""The deployment's sensors, built with the plugin's sensor factories.

With ``KLIO_PUBSUB_SUBSCRIPTION`` set, events come from Pub/Sub; otherwise
from the embedded local queue. Either sensor runs by default.
"""

from __future__ import annotations

import os

from dagster import JobDefinition, SensorDefinition

from klio_dagster import FeatureGraph
from klio_dagster.pubsub import build_pubsub_sensor
from klio_dagster.sensors import build_local_queue_sensor


def deployment_sensors(graph: FeatureGraph, job: JobDefinition) -> list[SensorDefinition]:
    if os.environ.get("KLIO_PUBSUB_SUBSCRIPTION"):
        return [build_pubsub_sensor(graph, job)]
    return [build_local_queue_sensor(graph, job)]
