"""The Beam executor: a real FnApiRunner pipeline with two worker processes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterInstance, Definitions, RunsFilter

from examples.reference_graph import reference_graph as graph
from klio_dagster import (
    FeatureExecutorResource,
    FeatureStoreResource,
    InProcessExecutor,
    LocalFeatureStore,
    OutputEventsResource,
    TrackTask,
    audio_source_spec,
    build_feature_assets,
    build_features_job,
)
from klio_dagster.beam import BeamExecutor
from klio_dagster.lineage import load_lineage, plan
from klio_dagster.registry import record_sources
from klio_dagster.runs import execute_run, run_request_for

pytestmark = pytest.mark.beam


def beam_definitions(store_uri: str) -> Definitions:
    features = build_feature_assets(graph)
    return Definitions(
        assets=[audio_source_spec(), features],
        jobs=[build_features_job([features])],
        resources={
            "klio_store": FeatureStoreResource(uri=store_uri),
            "klio_executor": FeatureExecutorResource(mode="beam", num_workers=2),
            "klio_output": OutputEventsResource(),
        },
    )


def test_one_run_one_pipeline_same_results_as_in_process(cli, ingested, klio_env, tmp_path):
    defs = beam_definitions(str(klio_env / "store"))
    job = defs.resolve_job_def("klio_features_job")
    instance = DagsterInstance.get()
    everything = list(graph.names)
    work = plan(graph, load_lineage(instance, everything, ingested), everything, ingested)
    outcome = execute_run(job, instance, run_request_for(graph, work, [], run_key=None, tags={}))
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
        np.testing.assert_array_equal(
            np.load(klio_env / "store" / "downsample" / f"{track}.npy"),
            np.load(tmp_path / "in-process" / "downsample" / f"{track}.npy"),
        )
        for feature, ext in (("beat_tracking", "parquet"), ("speechiness", "json")):
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
    tests_dir = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")])))
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
