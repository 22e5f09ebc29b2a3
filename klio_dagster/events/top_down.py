"""Top-down propagation: a finished parent makes its children run, across code locations.

A sensor in the children's code location reads new materialisations of the
parents from the instance's event log (one batched query per parent,
cursored by storage ID), keeps those made by top-down runs (Klio's
bottom-up mode must never wake siblings), plans the children for those
tracks against lineage and asks for one batched run per tick.

Why a sensor and not declarative automation: an automation condition is
evaluated per partition of a dynamic partition set that grows to millions
of tracks, cannot tell a top-down materialisation from a bottom-up one, and
would launch runs for partition ranges instead of our any-set-of-tracks
batches. The sensor's cost depends only on the new events.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from klio_dagster.errors import FeatureGraphError
from klio_dagster.events.priority import LIVE_PRIORITY_TAGS
from klio_dagster.orchestration.resources import FeatureStoreResource
from klio_dagster.orchestration.runs import run_request_for
from klio_dagster.orchestration.tags import MODE_TAG, SOURCE_TAG, TOP_DOWN
from klio_dagster.planning.lineage import plan_against

if TYPE_CHECKING:
    from klio_dagster.orchestration.factory import FeatureLocation
    from klio_dagster.tiers.base import Catalogue


#: How long the children wait for a parent's run still in progress before taking what it has recorded.
MAX_WAIT_FOR_PARENT_RUN_S = 60.0


def _top_down_tracks(
    context: SensorEvaluationContext, catalogue: Catalogue, parent: str, after: int | None, limit: int, now: float
) -> tuple[list[str], int | None]:
    """Tracks of ``parent`` materialised by top-down runs after storage ID ``after``; the new cursor.

    Materialisations of a run still in progress are left for a later tick (the cursor stops
    before the first of them), so that a run's tracks wake their children in one batch, unless
    they are older than :data:`MAX_WAIT_FOR_PARENT_RUN_S`: a long backfill's children start anyway.
    """
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(parent), after_storage_id=after), limit=limit, ascending=True
    ).records
    if not records:
        return [], after
    runs = {run.run_id: run for run in context.instance.get_runs(RunsFilter(run_ids=list({r.run_id for r in records})))}
    taken = []
    for record in records:
        run = runs.get(record.run_id)
        if run is not None and not run.is_finished and now - record.timestamp < MAX_WAIT_FOR_PARENT_RUN_S:
            break
        taken.append(record)
    if not taken:
        return [], after
    tracks = [
        t for r in taken if r.run_id in runs and runs[r.run_id].tags.get(MODE_TAG) == TOP_DOWN
        for t in catalogue.tracks_of_materialization(r)
    ]
    return list(dict.fromkeys(tracks)), taken[-1].storage_id


def build_top_down_sensor(
    location: FeatureLocation,
    *,
    parents: Sequence[str] | None = None,
    name: str | None = None,
    max_events_per_tick: int = 10_000,
    minimum_interval_seconds: int = 10,
) -> SensorDefinition:
    """A sensor running the location's children of ``parents`` (default: its external features) top-down.

    ``name`` defaults to ``"{asset name}_top_down"``.

    Its cursor maps each parent to the last storage ID read. Children that are
    already current for a track are skipped by the planner, so replays and
    overlapping events compute nothing twice; the run key (the storage-ID
    window) makes a replayed tick launch nothing twice.
    """
    graph = location.graph
    watched = list(parents or graph.external_names)
    if not watched:
        raise FeatureGraphError("a top-down sensor needs parent features: pass `parents`, or give the graph `external` features")
    children = graph.descendants(watched)
    sensor_name = name or location.sensor_name("top_down")

    @sensor(
        name=sensor_name,
        job_name=location.job_name,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval_seconds,
        description=f"Runs {children} for tracks whose {watched} a top-down run has materialised.",
    )
    def _sensor(context: SensorEvaluationContext, klio_store: FeatureStoreResource):
        catalogue = location.tier.open(context.instance, klio_store.get_store())
        cursor: dict[str, int | None] = json.loads(context.cursor) if context.cursor else {}
        tracks: list[str] = []
        now = time.time()
        for parent in watched:
            found, cursor[parent] = _top_down_tracks(context, catalogue, parent, cursor.get(parent), max_events_per_tick, now)
            tracks.extend(found)
        tracks = list(dict.fromkeys(tracks))
        new_cursor = json.dumps(cursor, sort_keys=True)
        if not tracks:
            return SensorResult(skip_reason="no new top-down materialisations of the parents", cursor=new_cursor)
        work = plan_against(catalogue, graph, children, tracks)
        context.log.info(f"{len(tracks)} tracks with new {watched}: {len(work.to_compute)} pairs to compute")
        if not work.to_compute:
            return SensorResult(skip_reason=f"children of {len(tracks)} tracks already current", cursor=new_cursor)
        run_key = hashlib.sha1(f"{sensor_name}:{context.cursor}->{new_cursor}".encode()).hexdigest()[:16]
        request = run_request_for(
            location,
            work,
            [],
            run_key=run_key,
            tags={**LIVE_PRIORITY_TAGS, MODE_TAG: TOP_DOWN, SOURCE_TAG: f"top-down:{','.join(watched)}"},
        )
        return SensorResult(run_requests=[request], cursor=new_cursor)

    return _sensor
