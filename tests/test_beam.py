"""The Beam executor: a real FnApiRunner pipeline with two worker processes."""

from __future__ import annotations

import os

import pytest
from dagster import DagsterInstance, Definitions, RunsFilter
from runs import run_plan

from examples.reference_graph import reference_graph as graph
from klio_dagster import (
    FeatureExecutorResource,
    FeatureStoreResource,
    InProcessExecutor,
    LocalFeatureStore,
    OutputEventsResource,
    TrackTask,
    build_feature_definitions,
)
from klio_dagster.executors.beam import BeamExecutor
from klio_dagster.orchestration.resources import TrackSourcesResource
from klio_dagster.planning.lineage import load_lineage
from klio_dagster.planning.planner import plan
from klio_dagster.storage.registry import record_sources

pytestmark = [pytest.mark.integration, pytest.mark.beam]


def beam_definitions(store_uri: str) -> Definitions:
    return build_feature_definitions(
        graph,
        resources={
            "klio_store": FeatureStoreResource(uri=store_uri),
            "klio_executor": FeatureExecutorResource(mode="beam", num_workers=2),
            "klio_output": OutputEventsResource(),
            "klio_sources": TrackSourcesResource(),
        },
    )


def test_one_run_one_pipeline_same_results_as_in_process(cli, ingested, klio_env, tmp_path):
    defs = beam_definitions(str(klio_env / "store"))
    instance = DagsterInstance.get()
    everything = list(graph.names)
    work = plan(graph, load_lineage(instance, everything, ingested), everything, ingested)
    outcome = run_plan(defs, work)
    assert outcome.failed == []
    assert sorted(outcome.computed) == sorted(work.to_compute)
    assert len(outcome.computed) == len(graph) * len(ingested)
    (run,) = instance.get_runs(RunsFilter(run_ids=[outcome.run_id]))
    logs = " ".join(e.message for e in instance.all_logs(run.run_id) if e.message)
    assert "BeamExecutor" in logs

    # The same per-track function in-process gives identical outputs.
    reference = LocalFeatureStore(tmp_path / "in-process")
    for track in ingested[:2]:
        reference.write_bytes(f"audio/{track}.json", (klio_env / "store" / "audio" / f"{track}.json").read_bytes())
        list(InProcessExecutor().run([TrackTask(track, tuple(graph.names))], graph, reference))
        for feature, ext in (("downsample", "wav"), ("beat_tracking", "parquet"), ("speechiness", "json")):
            assert (klio_env / "store" / feature / f"{track}.{ext}").read_bytes() == (
                tmp_path / "in-process" / feature / f"{track}.{ext}"
            ).read_bytes()
    assert not (klio_env / "store" / "_runs").exists() or not any((klio_env / "store" / "_runs").iterdir())


def test_beam_executor_streams_results_and_isolates_failures(catalogue, tmp_path):
    store = LocalFeatureStore(tmp_path / "store")

    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    record_sources(store, {"good": str(catalogue[0].path), "broken": str(tmp_path / "broken.wav")})
    tasks = [TrackTask("good", ("downsample", "energy")), TrackTask("broken", ("downsample", "energy"))]
    by_pair = {
        (r.feature, r.track_id): r for batch in BeamExecutor(num_workers=2).run(tasks, graph, store) for r in batch
    }
    assert set(by_pair) == {(f, t) for f in ("downsample", "energy") for t in ("good", "broken")}
    assert by_pair[("downsample", "good")].ok
    assert by_pair[("energy", "good")].error is not None  # beat_tracking is not stored: a clear error
    assert "beat_tracking" in by_pair[("energy", "good")].error
    assert "cannot decode" in by_pair[("downsample", "broken")].error


@pytest.mark.skipif(os.cpu_count() < 2, reason="one core: BLAS runs one thread whatever the limit")
def test_each_worker_runs_one_native_thread_by_default(catalogue, tmp_path, monkeypatch):
    """One worker per core, so each worker's BLAS must not start a thread per core too."""
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the executor lets its workers import tests/probe_features.py
    from probe_features import probe_graph
    from threadpoolctl import threadpool_info

    store = LocalFeatureStore(tmp_path / "store")
    record_sources(store, {"t": str(catalogue[0].path)})

    def worker_threads(executor: BeamExecutor) -> int:
        (results,) = executor.run([TrackTask("t", ("blas_threads",))], probe_graph, store)
        assert results[0].ok, results[0].error
        return results[0].metadata["blas_threads"]

    library_default = max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
    assert library_default > 1
    assert worker_threads(BeamExecutor(num_workers=1)) == 1
    assert worker_threads(BeamExecutor(num_workers=1, native_threads=0)) == library_default
