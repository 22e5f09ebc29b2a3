"""The deployment's sensors, built with the plugin's sensor factories."""

from __future__ import annotations

from dagster import JobDefinition, SensorDefinition

from klio_dagster import FeatureGraph
from klio_dagster.sensors import build_local_queue_sensor


def deployment_sensors(graph: FeatureGraph, job: JobDefinition) -> list[SensorDefinition]:
    return [build_local_queue_sensor(graph, job)]
