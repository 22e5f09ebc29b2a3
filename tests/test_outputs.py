"""Output events: one message per recorded (feature, track), in JSON or as a Klio v2 message."""

from __future__ import annotations

import json

import pytest
from dagster import AssetKey, DagsterInstance
from runs import catalogue_of, run_plan

from examples.reference_graph import reference_graph as graph
from klio_dagster import FeatureExecutorResource, FeatureStoreResource, OutputEventsResource, build_feature_definitions
from klio_dagster.events.klio_messages import KlioMessage, parse_message
from klio_dagster.events.local_queue import LocalQueue
from klio_dagster.orchestration.resources import TrackSourcesResource
from klio_dagster.planning.lineage import plan_against
from resources import profile_resources

pytestmark = pytest.mark.integration


def materialize_with_outputs(klio_env, tracks: list[str], output: OutputEventsResource, features=("speechiness",)):
    defs = build_feature_definitions(
        graph,
        resources={
            "klio_store": FeatureStoreResource(uri=str(klio_env / "store")),
            "klio_executor": FeatureExecutorResource(mode="in_process"),
            "klio_output": output,
            "klio_sources": TrackSourcesResource(),
        },
    )
    work = plan_against(catalogue_of(defs), graph, list(features), tracks)
    return run_plan(defs, work)


def test_json_output_events_follow_the_records(klio_env, ingested):
    outbox = LocalQueue(klio_env / "outbox")
    outcome = materialize_with_outputs(klio_env, ingested[:2], OutputEventsResource(local_queue=str(outbox.root)))
    events = [json.loads(m.data) for m in outbox.pull(None, 100)]
    assert sorted((e["feature"], e["track_id"]) for e in events) == sorted(outcome.computed)
    assert len(events) == 4 and {e["run_id"] for e in events} == {outcome.run_id}
    recorded = DagsterInstance.get().get_latest_materialization_event(AssetKey("speechiness"))
    mine = next(e for e in events if e["feature"] == "speechiness" and e["track_id"] == recorded.asset_materialization.partition)
    assert mine["data_version"] == recorded.asset_materialization.tags["dagster/data_version"]
    assert mine["uri"].endswith(".json") and mine["event"] == "materialized"


def test_klio_output_events_feed_klio_v2_consumers(klio_env, ingested):
    outbox = LocalQueue(klio_env / "outbox")
    materialize_with_outputs(klio_env, ingested[:1], OutputEventsResource(local_queue=str(outbox.root), message_format="klio"))
    messages = [KlioMessage.FromString(m.data) for m in outbox.pull(None, 100)]
    assert [m.metadata.visited[0].job_name for m in messages] == ["downsample", "speechiness"]
    first = messages[0]
    assert first.version == KlioMessage.V2 and first.data.element.decode() == ingested[0]
    assert first.metadata.intended_recipients.WhichOneof("recipients") == "anyone"
    assert json.loads(first.data.payload)["feature"] == "downsample"
    # Our own sensor reads it back as a top-down event for the track: Klio jobs chain the same way.
    event = parse_message(outbox.pull(None, 1)[0].data, {}, graph)
    assert event.track_id == ingested[0] and event.features == ()


def test_unpublishable_output_events_fail_the_run_but_keep_the_results(klio_env, ingested):
    not_a_directory = klio_env / "outbox-file"
    not_a_directory.write_text("a file where the output queue should be")
    outcome = materialize_with_outputs(klio_env, ingested[:1], OutputEventsResource(local_queue=str(not_a_directory)))
    assert sorted(outcome.computed) == [("downsample", ingested[0]), ("speechiness", ingested[0])]
    assert "output events could not be published" in outcome.step_errors[0]
    assert DagsterInstance.get().get_latest_materialization_event(AssetKey("speechiness")) is not None


def test_output_destination_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("KLIO_PUBSUB_OUTPUT_TOPIC", "projects/p/topics/features-done")
    monkeypatch.setenv("KLIO_OUTPUT_FORMAT", "klio")
    output = profile_resources("local")["klio_output"]
    assert output.topic == "projects/p/topics/features-done" and output.message_format == "klio" and output.enabled
    monkeypatch.delenv("KLIO_PUBSUB_OUTPUT_TOPIC")
    assert not profile_resources("local")["klio_output"].enabled
