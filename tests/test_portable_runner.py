"""The Beam pipeline on a runner that does not share the driver's process: Beam's portable runner,
submitting to the local job service (pure Python), whose SDK workers a worker pool starts.

The results channel (each worker writes a track's results to the store, the driver polls it), the
report of a job its runner accepted, and the cancellation of that job when the caller stops (as a
terminated Dagster run does) are the ones a Dataflow job goes through.
"""

from __future__ import annotations

import json
import os
import sys
import time

import grpc
import psutil
import pytest
from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc
from servers import REPO, free_port, local_server

from examples.reference_graph import reference_graph as graph
from klio_dagster import InProcessExecutor, LocalFeatureStore, TrackTask
from klio_dagster.executors.beam import BeamExecutor, SubmittedJob
from klio_dagster.storage.registry import record_sources

pytestmark = [pytest.mark.integration, pytest.mark.beam]


@pytest.fixture(scope="module")
def job_service():
    """The local job service and an SDK worker pool (PYTHONPATH: the repository and tests/), each its own process.

    The pool starts each worker as ``python`` from ``PATH``: this interpreter's folder goes first.
    """
    job_port, pool_port = free_port(), free_port()
    path = {
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
    }
    service = [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main", f"--port={job_port}"]
    pool = [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}"]
    with local_server(service, job_port, env={}, what="Beam's local job service", server_env=path), \
            local_server(pool, pool_port, env={}, what="Beam's worker pool", server_env=path):
        yield job_port, pool_port


def portable(job_service, submitted: list[SubmittedJob]) -> BeamExecutor:
    job_port, pool_port = job_service
    args = [f"--job_endpoint=localhost:{job_port}", "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}"]
    return BeamExecutor(runner="PortableRunner", pipeline_args=args, poll_interval_s=0.2, on_submitted=submitted.append)


def jobs(job_service) -> dict[str, str]:
    """Job name (the pipeline's ``job_name`` option: the service calls every job "job"): state, as the job service reports them."""
    with grpc.insecure_channel(f"localhost:{job_service[0]}") as channel:
        infos = beam_job_api_pb2_grpc.JobServiceStub(channel).GetJobs(beam_job_api_pb2.GetJobsRequest()).job_info
        return {
            i.pipeline_options.fields["beam:option:job_name:v1"].string_value: beam_job_api_pb2.JobState.Enum.Name(i.state)
            for i in infos
        }


def test_the_pipeline_runs_on_the_portable_runner_with_the_same_outputs(job_service, catalogue, tmp_path):
    from probe_features import process_graph

    store = LocalFeatureStore(tmp_path / "store")
    tracks = [t.track_id for t in catalogue[:2]]
    record_sources(store, {t.track_id: str(t.path) for t in catalogue[:2]})
    submitted: list[SubmittedJob] = []
    features = ("downsample", "beat_tracking", "energy")
    results = [r for batch in portable(job_service, submitted).run([TrackTask(t, features) for t in tracks], graph, store) for r in batch]
    assert sorted((r.feature, r.track_id) for r in results) == sorted((f, t) for f in features for t in tracks)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert {r.metadata["executor"] for r in results} == {"beam/PortableRunner"}
    (job,) = submitted
    assert job.runner == "PortableRunner" and job.name.startswith("klio-") and not job.job_id
    assert job.tags() == {"klio/beam_runner": "PortableRunner", "klio/beam_job": job.name}
    assert jobs(job_service)[job.name] == "DONE"
    assert not any((tmp_path / "store" / "_runs").iterdir())  # the results folder is gone with the batch

    # The bytes are the in-process executor's.
    reference = LocalFeatureStore(tmp_path / "in-process")
    record_sources(reference, {t.track_id: str(t.path) for t in catalogue[:2]})
    list(InProcessExecutor().run([TrackTask(t, features) for t in tracks], graph, reference))
    for track in tracks:
        for feature, ext in (("downsample", "wav"), ("beat_tracking", "parquet"), ("energy", "parquet")):
            assert (tmp_path / "store" / feature / f"{track}.{ext}").read_bytes() == (
                tmp_path / "in-process" / feature / f"{track}.{ext}"
            ).read_bytes()

    # The workers are the worker pool's processes, not the driver's (which only started the servers, here).
    (probe,) = next(iter(portable(job_service, []).run([TrackTask(tracks[0], ("worker_process",))], process_graph, store)))
    assert probe.ok, probe.error
    worker = json.loads(store.read_bytes(f"worker_process/{tracks[0]}.json"))
    assert worker["pid"] != os.getpid() and worker["ancestors"][0] != os.getpid()
    assert "apache_beam.runners.worker.worker_pool_main" in psutil.Process(worker["ancestors"][0]).cmdline()


def test_a_stopped_batch_cancels_its_job(job_service, catalogue, tmp_path):
    from probe_features import process_graph

    store = LocalFeatureStore(tmp_path / "store")
    # The executor orders tasks by a hash of their IDs: "quick" before "slow", for the pool's one worker.
    record_sources(store, {"quick": str(catalogue[0].path), "slow": str(catalogue[0].path)})
    submitted: list[SubmittedJob] = []
    batches = portable(job_service, submitted).run(
        [TrackTask("quick", ("worker_process",)), TrackTask("slow", ("worker_process",))], process_graph, store
    )
    (first,) = next(batches)  # the quick track's results; the slow one computes for a minute
    assert first.track_id == "quick" and first.ok
    (job,) = submitted
    assert jobs(job_service)[job.name] == "RUNNING"
    started = time.monotonic()
    batches.close()  # what a terminated run does to the step's executor
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 30
    while jobs(job_service)[job.name] not in ("CANCELLED", "CANCELLING") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert jobs(job_service)[job.name] in ("CANCELLED", "CANCELLING")


def test_an_unreachable_job_service_fails_the_batch_saying_where_it_looked(catalogue, tmp_path):
    store = LocalFeatureStore(tmp_path / "store")
    record_sources(store, {"t": str(catalogue[0].path)})
    port = free_port()  # nothing serves it
    executor = BeamExecutor(runner="PortableRunner", pipeline_args=[f"--job_endpoint=localhost:{port}", "--job_server_timeout=3"])
    with pytest.raises(RuntimeError, match=f"is a job service serving --job_endpoint=localhost:{port}"):
        list(executor.run([TrackTask("t", ("downsample",))], graph, store))
