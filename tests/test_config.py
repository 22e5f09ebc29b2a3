"""Wrong configuration fails early with a message that says what to do."""

from __future__ import annotations

import pytest

from examples.reference_graph import reference_graph as graph
from klio_dagster import FeatureExecutorResource, LocalFeatureStore, StoreError, TrackTask, open_store
from klio_dagster.executors.beam import BeamExecutor
from resources import profile_resources

pytestmark = pytest.mark.unit


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown KLIO_PROFILE 'cloud'"):
        profile_resources("cloud")


def test_gcp_profile_runs_batches_on_dataflow(klio_env, monkeypatch):
    monkeypatch.setenv("GCP_PROJECT", "my-project")
    monkeypatch.setenv("KLIO_DATAFLOW_TEMP", "gs://bucket/tmp")
    executor = profile_resources("gcp")["klio_executor"]
    assert executor.runner == "DataflowRunner"
    assert "--project=my-project" in executor.pipeline_args and "--temp_location=gs://bucket/tmp" in executor.pipeline_args


def test_dataflow_needs_a_gcs_store(tmp_path):
    with pytest.raises(ValueError, match="set KLIO_STORE to gs://"):
        next(BeamExecutor(runner="DataflowRunner").run([TrackTask("t", ("downsample",))], graph, LocalFeatureStore(tmp_path)))


def test_unknown_runner(tmp_path):
    with pytest.raises(ValueError, match="unknown Beam runner"):
        next(BeamExecutor(runner="SparkRunner").run([TrackTask("t", ("downsample",))], graph, LocalFeatureStore(tmp_path)))


@pytest.mark.parametrize(("uri", "message"), [("", "empty"), ("s3://bucket/x", "unsupported"), ("gs://", "no bucket")])
def test_bad_store_uris(uri, message):
    with pytest.raises(StoreError, match=message):
        open_store(uri)


def test_store_names_cannot_escape_the_root(tmp_path):
    with pytest.raises(StoreError, match="escapes"):
        LocalFeatureStore(tmp_path).write_bytes("../outside.npy", b"x")


def test_executor_choice():
    auto = FeatureExecutorResource(mode="auto", beam_min_tracks=8)
    assert type(auto.executor_for(7)).__name__ == "InProcessExecutor"
    assert type(auto.executor_for(8)).__name__ == "BeamExecutor"
    with pytest.raises(Exception, match="mode"):
        FeatureExecutorResource(mode="fast")


def test_pubsub_subscription_switches_the_reference_sensor(monkeypatch, klio_env):
    from examples.reference_graph import reference_graph
    from klio_dagster import build_feature_definitions
    from sensors import ingestion_sensors

    def sensor_names() -> list[str]:
        return [s.name for s in build_feature_definitions(reference_graph, sensors=ingestion_sensors()).sensors]

    assert sensor_names() == ["klio_features_local_ingestion"]
    monkeypatch.setenv("KLIO_PUBSUB_SUBSCRIPTION", "projects/p/subscriptions/s")
    monkeypatch.setenv("KLIO_PUBSUB_DEAD_LETTER_TOPIC", "projects/p/topics/dead")
    assert sensor_names() == ["klio_features_pubsub_ingestion"]
    pubsub = profile_resources("local")["klio_pubsub"]
    assert pubsub.dead_letter_topic == "projects/p/topics/dead"


def test_a_command_gives_a_new_local_instance_the_run_queue_unless_its_config_was_edited(klio_env):
    from dagster import DagsterInstance

    from klio_dagster.cli.location import prepare_environment
    from klio_dagster.orchestration.instance import INSTANCE_CONFIG

    config = klio_env / "home" / "dagster.yaml"
    config.write_text("telemetry:\n  enabled: false\n")  # what earlier versions wrote
    prepare_environment()
    assert config.read_text() == INSTANCE_CONFIG
    with DagsterInstance.get() as instance:
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 2 and queue.tag_concurrency_limits[0]["key"] == "dagster/backfill"
        assert not instance.nux_enabled  # no pop-up over the UI's first visit
    edited = "telemetry:\n  enabled: true\n"
    config.write_text(edited)
    prepare_environment()
    assert config.read_text() == edited


def test_commands_name_their_runs_code_location_as_the_workspace_does(tmp_path, monkeypatch):
    from klio_dagster.cli.location import workspace_location_name

    monkeypatch.delenv("KLIO_LOCATION_NAME", raising=False)
    workspace = tmp_path / "workspace.yaml"
    (tmp_path / "team.py").write_text("")
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n      module_name: definitions\n      location_name: klio_reference\n"
        "  - python_module: plain_module\n"
        "  - python_file:\n      relative_path: team.py\n      location_name: team_location\n"
    )
    assert workspace_location_name("definitions", workspace) == "klio_reference"
    assert workspace_location_name("plain_module", workspace) == "plain_module"
    assert workspace_location_name(str(tmp_path / "team.py"), workspace) == "team_location"
    assert workspace_location_name("examples.harmony", workspace) == "examples.harmony"  # Dagster's default
    assert workspace_location_name("definitions", tmp_path / "missing.yaml") == "definitions"
    workspace.write_text(": not yaml [")
    assert workspace_location_name("definitions", workspace) == "definitions"
    monkeypatch.setenv("KLIO_LOCATION_NAME", "chosen")
    assert workspace_location_name("definitions", workspace) == "chosen"
