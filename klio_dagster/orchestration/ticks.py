"""Evaluating a sensor tick in this process, exactly as Dagster's sensor daemon would."""

from __future__ import annotations

from dagster import DagsterInstance, Definitions, SensorResult, build_sensor_context


def evaluate_tick(defs: Definitions, sensor_name: str, instance: DagsterInstance, cursor: str | None = None) -> SensorResult:
    """One evaluation of ``sensor_name`` of ``defs`` against ``instance``, with the location's resources.

    The result carries the run requests and the new cursor; nothing is launched.
    """
    sensor = defs.resolve_sensor_def(sensor_name)
    with build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources) as context:
        return sensor.evaluate_tick(context)
