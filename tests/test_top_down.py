"""Top-down across code locations: the harmony team's ``key`` follows the reference ``downsample``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from dagster import AssetKey, DagsterInstance
from runs import catalogue_of

import definitions
from examples import harmony
from klio_dagster.events.local_queue import LocalQueue
from klio_dagster.events.messages import TrackEvent
from klio_dagster.orchestration.runs import execute_run
from klio_dagster.orchestration.ticks import evaluate_tick

pytestmark = pytest.mark.sensor


def tick(defs, sensor_name, cursor=None):
    return evaluate_tick(defs, sensor_name, DagsterInstance.get(), cursor)


def run_all(defs, job_name, requests):
    job = defs.resolve_job_def(job_name)
    return [execute_run(job, catalogue_of(defs), r) for r in requests]


def progression(*chords: tuple[int, ...], sr: int = 22_050) -> np.ndarray:
    """One second per chord; each chord is MIDI note numbers."""
    t = np.arange(sr) / sr
    bars = [sum(np.sin(2 * np.pi * 440.0 * 2 ** ((n - 69) / 12) * t) for n in chord) for chord in chords]
    return np.concatenate(bars).astype(np.float32)


def test_estimate_key_of_cadences():
    sr = 22_050
    c_major = progression((60, 64, 67), (65, 69, 72), (67, 71, 74), (60, 64, 67))  # I IV V I
    a_minor = progression((57, 60, 64), (62, 65, 69), (64, 68, 71), (57, 60, 64))  # i iv V i
    assert harmony.estimate_key(c_major, sr)[0] == "C major"
    assert harmony.estimate_key(a_minor, sr)[0] == "A minor"
    assert harmony.estimate_key(np.zeros(sr, dtype=np.float32), sr) == ("C major", 0.0)


def test_top_down_runs_children_in_another_location_batched_and_once(klio_env, catalogue):
    instance = DagsterInstance.get()
    queue = LocalQueue(klio_env / "queue")
    tracks = [t.track_id for t in catalogue[:3]]
    queue.publish_events([TrackEvent(t.track_id, uri=str(t.path)) for t in catalogue[:3]])
    ingest = tick(definitions.defs, "klio_features_local_ingestion")
    (outcome,) = run_all(definitions.defs, "klio_features_job", ingest.run_requests)
    assert not outcome.failed

    first = tick(harmony.defs, "harmony_features_top_down")
    (request,) = first.run_requests  # three tracks, one run
    assert sorted(request.run_config["ops"]["harmony_features"]["config"]["tracks"]) == sorted(tracks)
    assert request.tags["klio/mode"] == "top-down" and request.tags["dagster/priority"] == "100"
    # A tick replayed before the run happened (its result was lost) asks for the same run key: Dagster launches it once.
    assert tick(harmony.defs, "harmony_features_top_down").run_requests[0].run_key == request.run_key
    (key_run,) = run_all(harmony.defs, "harmony_features_job", first.run_requests)
    assert sorted(key_run.computed) == sorted(("key", t) for t in tracks) and not key_run.failed
    latest = instance.get_latest_materialization_event(AssetKey("key"))
    assert latest.asset_materialization.metadata["key"].value in harmony.KEYS

    # Nothing new upstream: no run. Replayed after the run: the keys are current, nothing to compute.
    assert tick(harmony.defs, "harmony_features_top_down", first.cursor).run_requests == []
    assert tick(harmony.defs, "harmony_features_top_down").run_requests == []


def test_bottom_up_materialisations_do_not_wake_other_teams(cli, klio_env, ingested):
    code, out = cli("materialize", "speechiness", "--tracks", ingested[0])
    assert code == 0 and ["downsample", ingested[0]] in out["computed"]
    result = tick(harmony.defs, "harmony_features_top_down")
    assert result.run_requests == []


def test_children_run_again_when_a_recomputed_parent_changed(klio_env, catalogue):
    queue = LocalQueue(klio_env / "queue")
    track = catalogue[0]
    source = klio_env / f"{track.track_id}{track.path.suffix}"
    shutil.copy(track.path, source)
    queue.publish_events([TrackEvent(track.track_id, uri=str(source))])
    ingest = tick(definitions.defs, "klio_features_local_ingestion")
    run_all(definitions.defs, "klio_features_job", ingest.run_requests)
    first = tick(harmony.defs, "harmony_features_top_down")
    run_all(harmony.defs, "harmony_features_job", first.run_requests)

    # A forced top-down event recomputes downsample into the same bytes: key is current (Dagster's
    # staleness agrees), so the other team's sensor plans nothing.
    queue.publish_events([TrackEvent(track.track_id, force=True)])
    again = tick(definitions.defs, "klio_features_local_ingestion", ingest.cursor)
    run_all(definitions.defs, "klio_features_job", again.run_requests)
    assert tick(harmony.defs, "harmony_features_top_down", first.cursor).run_requests == []

    # The source changes and downsample is recomputed into other bytes: key is stale, and runs again.
    shutil.copy(next(t.path for t in catalogue if t.path.suffix == track.path.suffix and t is not track), source)
    queue.publish_events([TrackEvent(track.track_id, force=True)])
    changed = tick(definitions.defs, "klio_features_local_ingestion", again.cursor)
    run_all(definitions.defs, "klio_features_job", changed.run_requests)
    (request,) = tick(harmony.defs, "harmony_features_top_down", first.cursor).run_requests
    assert request.run_config["ops"]["harmony_features"]["config"]["tracks"] == [track.track_id]


def test_children_wait_for_the_parents_run_to_finish_so_its_tracks_make_one_batch(klio_env):
    import time

    from dagster import AssetMaterialization, DagsterRunStatus
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.test_utils import create_run_for_test

    from klio_dagster.events.top_down import MAX_WAIT_FOR_PARENT_RUN_S
    from klio_dagster.orchestration.partitions import register_tracks

    instance = DagsterInstance.get()
    register_tracks(instance, ["a", "b", "c"])

    def top_down_run() -> str:
        return create_run_for_test(
            instance, job_name="klio_features_job", status=DagsterRunStatus.STARTED, tags={"klio/mode": "top-down"}
        ).run_id

    def recorded(run_id: str, track: str, timestamp: float | None = None) -> None:
        event = DagsterEvent(
            DagsterEventType.ASSET_MATERIALIZATION.value, "klio_features_job",
            event_specific_data=StepMaterializationData(AssetMaterialization("downsample", partition=track)),
        )
        instance.report_dagster_event(event, run_id, timestamp=timestamp)

    def tracks_of(result) -> list[str]:
        (request,) = result.run_requests
        return sorted(request.run_config["ops"]["harmony_features"]["config"]["tracks"])

    parent = top_down_run()
    recorded(parent, "a")
    waiting = tick(harmony.defs, "harmony_features_top_down")
    assert not waiting.run_requests  # the parent's run is still going: its first track waits for the rest
    recorded(parent, "b")
    instance.report_run_failed(instance.get_run_by_id(parent))  # finished (whichever way)
    batched = tick(harmony.defs, "harmony_features_top_down", waiting.cursor)
    assert tracks_of(batched) == ["a", "b"]  # one batch

    long_run = top_down_run()
    recorded(long_run, "c", timestamp=time.time() - MAX_WAIT_FOR_PARENT_RUN_S - 1)
    assert tracks_of(tick(harmony.defs, "harmony_features_top_down", batched.cursor)) == ["c"]  # no waiting for ever
