"""Dataflow without a cloud account: options checked, and a real Dataflow job built by Beam's
DataflowRunner (a template written to a local file), staged to the GCS emulator, checked field by field."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from google.cloud import storage
from servers import gcs_emulator as running_gcs_emulator

from examples.reference_graph import reference_graph as graph
from klio_dagster.core.execution import TrackTask
from klio_dagster.errors import ConfigurationError
from klio_dagster.executors.beam import BeamExecutor
from klio_dagster.executors.dataflow import DataflowOptions, job_args
from klio_dagster.storage.stores import open_store

BUCKET = "klio-dataflow"
OPTIONS = DataflowOptions(
    project="acme-audio", region="europe-west1", temp_location=f"gs://{BUCKET}/tmp", staging_location=f"gs://{BUCKET}/staging",
    sdk_container_image="europe-docker.pkg.dev/acme-audio/klio/klio-dagster-dataflow:0.1.0",
    service_account_email="klio-worker@acme-audio.iam.gserviceaccount.com", network="audio", subnetwork="regions/europe-west1/subnetworks/audio",
    machine_type="n2-highmem-4", max_num_workers=40, experiments=("use_runner_v2",), use_public_ips=False,
)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("changes", "message"),
    [({"project": ""}, "needs project"), ({"temp_location": ""}, "needs temp_location"), ({"temp_location": "/tmp/x"}, "gs://"),
     ({"staging_location": "s3://b/x"}, "gs://"), ({"max_num_workers": -1}, "max_num_workers")],
)
def test_dataflow_options_that_cannot_work_are_refused_saying_which(changes, message):
    fields = {**OPTIONS.__dict__, **changes}
    with pytest.raises(ConfigurationError, match=message):
        DataflowOptions(**fields)


@pytest.mark.unit
def test_job_names_and_labels_follow_dataflows_rules():
    run_id = str(uuid.uuid4())
    assert job_args("klio-0123abcd", {"dagster-run-id": run_id}) == ["--job_name=klio-0123abcd", f"--labels=dagster-run-id={run_id}"]
    for name in ("Klio", "klio_x", "9klio", "klio-"):
        with pytest.raises(ConfigurationError, match="job name"):
            job_args(name, {})
    with pytest.raises(ConfigurationError, match="label"):
        job_args("klio-x", {"Run": "x"})


@pytest.mark.unit
def test_the_gcp_profile_reads_every_option_and_refuses_a_missing_one(monkeypatch):
    from resources import profile_resources

    for name in [n for n in __import__("os").environ if n.startswith("KLIO_DATAFLOW_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GCP_PROJECT", "acme-audio")
    monkeypatch.setenv("KLIO_STORE", "gs://bucket/features")
    with pytest.raises(ConfigurationError, match="temp_location"):
        profile_resources("gcp")
    for name, value in {"TEMP": "gs://b/tmp", "MACHINE_TYPE": "n2-highmem-4", "MAX_WORKERS": "40", "EXPERIMENTS": "a,b",
                        "PUBLIC_IPS": "false", "SERVICE_ACCOUNT": "w@p.iam.gserviceaccount.com"}.items():
        monkeypatch.setenv(f"KLIO_DATAFLOW_{name}", value)
    args = profile_resources("gcp")["klio_executor"].pipeline_args
    assert {"--region=us-central1", "--machine_type=n2-highmem-4", "--max_num_workers=40", "--experiments=a", "--experiments=b",
            "--no_use_public_ips", "--service_account_email=w@p.iam.gserviceaccount.com"} <= set(args)


@pytest.fixture(scope="module")
def gcs_emulator():
    with running_gcs_emulator(BUCKET):
        yield


@pytest.mark.integration
@pytest.mark.gcs
def test_a_batch_builds_a_dataflow_job_with_its_options_and_run_label_staged_to_gcs(gcs_emulator, tmp_path):
    from apache_beam.portability.api import beam_runner_api_pb2

    run_id = str(uuid.uuid4())
    template = tmp_path / "template.json"
    executor = BeamExecutor(
        runner="DataflowRunner", pipeline_args=[*OPTIONS.args(), f"--template_location={template}"], labels={"dagster-run-id": run_id}
    )
    store = open_store(f"gs://{BUCKET}/features", gcs_project="test")
    tasks = [TrackTask(f"track-{i}", ("downsample", "energy")) for i in range(3)]
    pipeline, _, job_name = executor.build(tasks, graph, store)
    pipeline.run()  # with a template location, Beam builds and stages the job and writes it instead of submitting it

    job = json.loads(template.read_text())
    assert job["name"] == job_name and job["type"] == "JOB_TYPE_BATCH" and job["labels"] == {"dagster-run-id": run_id}
    env = job["environment"]
    (pool,) = env["workerPools"]
    assert env["serviceAccountEmail"] == OPTIONS.service_account_email
    assert env["tempStoragePrefix"].startswith(f"storage.googleapis.com/{BUCKET}/tmp/")
    assert "use_runner_v2" in env["experiments"]
    assert pool["machineType"] == OPTIONS.machine_type and pool["network"] == OPTIONS.network
    assert pool["subnetwork"] == OPTIONS.subnetwork and pool["ipConfiguration"] == "WORKER_IP_PRIVATE"
    assert pool["autoscalingSettings"]["maxNumWorkers"] == OPTIONS.max_num_workers
    assert [c["containerImage"] for c in pool["sdkHarnessContainerImages"]] == [OPTIONS.sdk_container_image]
    options = env["sdkPipelineOptions"]["options"]
    assert (options["project"], options["region"]) == (OPTIONS.project, OPTIONS.region)

    # What Beam staged is in the bucket: the pipeline itself, with the batch's transforms.
    staged = {b.name: b for b in storage.Client(project="test").list_blobs(BUCKET, prefix="staging/")}
    (pipeline_blob,) = [b for name, b in staged.items() if name.endswith("/pipeline.pb")]
    assert {p["location"].rsplit("/", 1)[1] for p in pool["packages"]} <= {n.rsplit("/", 1)[1] for n in staged}
    proto = beam_runner_api_pb2.Pipeline.FromString(pipeline_blob.download_as_bytes())
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert {"Tracks", "Spread", "Compute"} <= names


class Terminated(Exception):
    """What a terminated Dagster run raises in the step's thread (Dagster turns SIGTERM into an interrupt)."""


@pytest.mark.integration
@pytest.mark.gcs
def test_a_submitted_dataflow_job_is_named_for_its_run_and_cancelled_when_the_run_is_interrupted(gcs_emulator):
    """DataflowRunner submits the batch to a loopback stand-in of the Dataflow API; a signal interrupts the batch."""
    import signal
    import threading
    import time

    from dataflow_api import dataflow_api

    from klio_dagster.executors.beam import SubmittedJob

    run_id = str(uuid.uuid4())
    submitted: list[SubmittedJob] = []
    store = open_store(f"gs://{BUCKET}/features", gcs_project="test")
    tasks = [TrackTask(f"track-{i}", ("downsample",)) for i in range(2)]

    def interrupt(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        with dataflow_api() as (endpoint, api):
            executor = BeamExecutor(
                runner="DataflowRunner", pipeline_args=[*OPTIONS.args(), f"--dataflow_endpoint={endpoint}", "--no_auth"],
                labels={"dagster-run-id": run_id}, poll_interval_s=0.2, on_submitted=submitted.append,
            )

            def terminate_once_submitted() -> None:
                deadline = time.monotonic() + 120
                while not submitted and time.monotonic() < deadline:
                    time.sleep(0.2)
                os.kill(os.getpid(), signal.SIGUSR1)

            threading.Thread(target=terminate_once_submitted, daemon=True).start()
            with pytest.raises(Terminated):
                list(executor.run(tasks, graph, store))  # no worker runs here: no result ever comes

            (job,) = submitted
            (created,) = api.created
            assert created["name"] == job.name and created["labels"] == {"dagster-run-id": run_id}
            assert job.job_id == api.jobs[job.job_id]["id"]
            assert job.console_url == f"https://console.cloud.google.com/dataflow/jobs/{OPTIONS.region}/{job.job_id}?project={OPTIONS.project}"
            assert job.tags()["klio/dataflow_job_id"] == job.job_id
            assert api.state_changes == [(job.job_id, "JOB_STATE_CANCELLED")], api.requests
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.integration
@pytest.mark.gcs
def test_a_runs_dataflow_job_is_in_its_tags_and_a_job_that_computed_nothing_fails_the_run(gcs_emulator, klio_env):
    from dagster import DagsterInstance
    from dataflow_api import dataflow_api
    from runs import catalogue_of, run_plan

    from klio_dagster import FeatureExecutorResource, FeatureStoreResource, OutputEventsResource, build_feature_definitions
    from klio_dagster.orchestration.resources import TrackSourcesResource
    from klio_dagster.planning.lineage import plan_against

    with dataflow_api() as (endpoint, api):
        api.ends_as = "JOB_STATE_DONE"  # the job ends, and no worker wrote a result
        executor = FeatureExecutorResource(
            mode="beam", runner="DataflowRunner", pipeline_args=[*OPTIONS.args(), f"--dataflow_endpoint={endpoint}", "--no_auth"]
        )
        defs = build_feature_definitions(graph, resources={
            "klio_store": FeatureStoreResource(uri=f"gs://{BUCKET}/features", gcs_project="test"), "klio_executor": executor,
            "klio_output": OutputEventsResource(), "klio_sources": TrackSourcesResource(),
        })
        catalogue = catalogue_of(defs)
        tracks = [f"track-{i}" for i in range(2)]
        catalogue.register({t: f"gs://{BUCKET}/media/{t}.flac" for t in tracks})
        outcome = run_plan(defs, plan_against(catalogue, graph, ["downsample"], tracks))

    run = DagsterInstance.get().get_run_by_id(outcome.run_id)
    (created,) = api.created
    job_id = run.tags["klio/dataflow_job_id"]
    assert created["labels"] == {"dagster-run-id": outcome.run_id} and run.tags["klio/beam_job"] == created["name"]
    assert run.tags["klio/dataflow_console_url"].endswith(f"/dataflow/jobs/{OPTIONS.region}/{job_id}?project={OPTIONS.project}")
    assert outcome.computed == [] and {(f["feature"], f["track"]) for f in outcome.failed} == {("downsample", t) for t in tracks}
    assert all("no result" in f["error"] for f in outcome.failed)
