"""``klio-dagster demo``: the whole product on a synthetic catalogue, with no cloud.

Generates the catalogue, publishes one top-down event per track to the
embedded local queue, evaluates the ingestion sensor exactly as the daemon
would, executes the runs it requests (batched), acknowledges the messages
and summarises each track.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagster import DagsterInstance, Definitions, JobDefinition, build_sensor_context

from .events import TrackEvent
from .features import FeatureGraph
from .local_queue import LocalQueue
from .runs import execute_run
from .status import track_status
from .storage import FeatureStore

SENSOR_NAME = "klio_local_ingestion"


def _tick(defs: Definitions, instance: DagsterInstance, cursor: str | None):
    """One evaluation of the ingestion sensor, as the daemon would run it."""
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    with build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources) as context:
        return sensor.evaluate_tick(context)


def run_demo(
    defs: Definitions,
    graph: FeatureGraph,
    job: JobDefinition,
    instance: DagsterInstance,
    store: FeatureStore,
    *,
    n_tracks: int = 12,
    duration_s: float = 180.0,
) -> list[dict[str, Any]]:
    from examples.catalogue import write_catalogue

    catalogue = write_catalogue(
        Path(os.environ.get("KLIO_DATA", "data")) / "demo_audio", n_tracks, duration_s, overwrite=False
    )
    queue = LocalQueue(os.environ["KLIO_QUEUE"])
    queue.publish_events([TrackEvent(t.track_id, uri=str(t.path)) for t in catalogue])

    result = _tick(defs, instance, cursor=None)  # registers the tracks, asks for one batched run
    for request in result.run_requests:
        execute_run(job, instance, request)
    _tick(defs, instance, cursor=result.cursor)  # acknowledges the handled messages

    rows = []
    for track in catalogue:
        status = {r["feature"]: r for r in track_status(instance, graph, store, track.track_id)}
        meta = _latest_metadata(instance, track.track_id, ("beat_tracking", "energy", "speechiness", "instrumentalness"))
        rows.append(
            {
                "track": track.track_id,
                "tempo_bpm": meta["beat_tracking"].get("tempo_bpm"),
                "true_bpm": track.tempo_bpm,
                "mean_rms": meta["energy"].get("mean_rms"),
                "speechiness": meta["speechiness"].get("speechiness"),
                "instrumentalness": meta["instrumentalness"].get("instrumentalness"),
                "failed": [f for f, r in status.items() if r["state"] == "failed"],
                "outputs": str(Path(status["spectrogram"]["uri"] or "").parent.parent) if status["spectrogram"]["uri"] else None,
            }
        )
    return rows


def _latest_metadata(instance: DagsterInstance, track: str, features: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    from dagster import AssetKey, AssetRecordsFilter

    found: dict[str, dict[str, Any]] = {}
    for feature in features:
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(feature), asset_partitions=[track]), limit=1
        ).records
        m = records[0].asset_materialization if records else None
        found[feature] = {k: v.value for k, v in m.metadata.items()} if m else {}
    return found
