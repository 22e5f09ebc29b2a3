"""The Pub/Sub ingestion sensor against the real Pub/Sub emulator (skipped, loudly, where it is absent)."""

from __future__ import annotations

import json
import time

import pytest
from dagster import DagsterInstance
from pubsub_emulator import PROJECT, create_topic_and_subscription, emulator_command
from runs import catalogue_of
from servers import free_port, local_server

from examples.reference_graph import reference_graph as graph
from klio_dagster import FeatureExecutorResource, FeatureStoreResource, OutputEventsResource, build_feature_definitions
from klio_dagster.events.klio_messages import KlioMessage
from klio_dagster.events.pubsub import PubSubSourceResource, build_pubsub_sensor
from klio_dagster.orchestration.partitions import registered_tracks
from klio_dagster.orchestration.resources import TrackSourcesResource
from klio_dagster.orchestration.runs import execute_run
from klio_dagster.orchestration.ticks import evaluate_tick

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def emulator():
    port = free_port()
    with local_server(emulator_command(port), port, env={"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}"}, what="the Pub/Sub emulator"):
        yield


@pytest.fixture
def topics(emulator, request):
    from google.cloud import pubsub_v1

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    name = request.node.name.replace("_", "-")[:40]
    topic, dead = f"projects/{PROJECT}/topics/{name}", f"projects/{PROJECT}/topics/{name}-dead"
    sub, dead_sub = f"projects/{PROJECT}/subscriptions/{name}", f"projects/{PROJECT}/subscriptions/{name}-dead"
    for t, s in ((topic, sub), (dead, dead_sub)):
        create_topic_and_subscription(t, s)
    return publisher, subscriber, topic, sub, dead, dead_sub


def tick(defs, cursor=None):
    return evaluate_tick(defs, "klio_features_pubsub_ingestion", DagsterInstance.get(), cursor)


def definitions(klio_env, sub, dead, ack_deadline_s=300, output_topic=""):
    return build_feature_definitions(
        graph,
        sensors=[build_pubsub_sensor],
        resources={
            "klio_store": FeatureStoreResource(uri=str(klio_env / "store")),
            "klio_executor": FeatureExecutorResource(mode="in_process"),
            "klio_output": OutputEventsResource(topic=output_topic),
            "klio_sources": TrackSourcesResource(),
            "klio_pubsub": PubSubSourceResource(subscription=sub, dead_letter_topic=dead, ack_deadline_s=ack_deadline_s),
        },
    )


def test_formats_batching_dead_letters_and_ack_after_record(klio_env, catalogue, topics):
    publisher, subscriber, topic, sub, dead, dead_sub = topics
    for t in catalogue[:3]:  # JSON, top-down
        publisher.publish(topic, json.dumps({"track_id": t.track_id, "uri": str(t.path)}).encode()).result()
    publisher.publish(topic, b"", track_id=catalogue[3].track_id, uri=str(catalogue[3].path), features="energy").result()
    klio = KlioMessage(version=KlioMessage.V2)  # a Klio v2 publisher, for a track registered above
    klio.data.element = catalogue[0].track_id.encode()
    klio.metadata.intended_recipients.limited.recipients.add(job_name="speechiness")
    publisher.publish(topic, klio.SerializeToString()).result()
    publisher.publish(topic, b"{broken json").result()
    publisher.publish(topic, b"", eventType="OBJECT_DELETE", bucketId="b", objectId="x.wav").result()

    defs = definitions(klio_env, sub, dead)
    first = tick(defs)
    assert sorted(registered_tracks(DagsterInstance.get())) == sorted(t.track_id for t in catalogue[:4])
    modes = sorted(r.tags["klio/mode"] for r in first.run_requests)
    assert modes == ["bottom-up", "bottom-up", "top-down"]  # 7 messages, 3 runs: one per (features, force)

    dead_letters = subscriber.pull(subscription=dead_sub, max_messages=10, timeout=10).received_messages
    reasons = sorted(m.message.attributes["reason"] for m in dead_letters)
    assert len(reasons) == 2 and "not an upload" in reasons[0] and "not valid JSON" in reasons[1]

    # Not acknowledged yet: the next tick acknowledges what the first recorded.
    pending = klio_env / "store" / json.loads(first.cursor)["pending"] / "ack_ids.json"
    assert len(json.loads(pending.read_text())) == 5  # kept beside the features, named by the cursor
    second = tick(defs, first.cursor)
    assert second.run_requests == [] and not pending.exists()


def test_unrecorded_messages_are_redelivered_and_planned_once(klio_env, catalogue, topics):
    publisher, subscriber, topic, sub, dead, _ = topics
    t = catalogue[0]
    publisher.publish(topic, json.dumps({"track_id": t.track_id, "uri": str(t.path)}).encode()).result()
    defs = definitions(klio_env, sub, dead, ack_deadline_s=10)
    lost = tick(defs)  # the sensor process "dies": its result and cursor are never stored
    assert len(lost.run_requests) == 1
    time.sleep(12)
    again = tick(defs)
    assert len(again.run_requests) == 1
    assert again.run_requests[0].run_key == lost.run_requests[0].run_key  # Dagster launches it once

    # The lost tick's ack IDs are not left behind; the stored tick's are kept for the next tick.
    store = klio_env / "store"
    assert not (store / json.loads(lost.cursor)["pending"]).exists()
    assert (store / json.loads(again.cursor)["pending"] / "ack_ids.json").exists()


def empty(subscriber, sub) -> bool:
    """True if a pull gets nothing within 2 s (an empty pull waits for its whole timeout)."""
    from google.api_core.exceptions import DeadlineExceeded

    try:
        return subscriber.pull(subscription=sub, max_messages=10, timeout=2, retry=None).received_messages == []
    except DeadlineExceeded:
        return True


def test_ack_deadlines_are_extended_until_the_next_tick_acknowledges(klio_env, catalogue, topics):
    publisher, subscriber, topic, sub, dead, _ = topics  # the subscription's own deadline: 10 s
    t = catalogue[0]
    publisher.publish(topic, json.dumps({"track_id": t.track_id, "uri": str(t.path)}).encode()).result()
    defs = definitions(klio_env, sub, dead, ack_deadline_s=20)
    first = tick(defs)
    assert len(first.run_requests) == 1
    time.sleep(13)  # past the subscription's deadline, inside the extended one: no redelivery
    assert empty(subscriber, sub)
    tick(defs, first.cursor)  # acknowledges
    time.sleep(9)  # past the extended deadline: acknowledged, so still nothing
    assert empty(subscriber, sub)


def test_pubsub_restart_fails_one_tick_then_recovers(klio_env, catalogue, monkeypatch):
    from google.cloud import pubsub_v1

    port = free_port()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{port}")
    topic, sub = f"projects/{PROJECT}/topics/restart", f"projects/{PROJECT}/subscriptions/restart"
    defs = definitions(klio_env, sub, dead="")
    publish = lambda t: pubsub_v1.PublisherClient().publish(topic, json.dumps({"track_id": t.track_id, "uri": str(t.path)}).encode()).result()  # noqa: E731

    with local_server(emulator_command(port), port, env={}, what="the Pub/Sub emulator"):
        create_topic_and_subscription(topic, sub)
        publish(catalogue[0])
        recorded = tick(defs)
    assert registered_tracks(DagsterInstance.get()) == [catalogue[0].track_id]

    started = time.monotonic()
    with pytest.raises(Exception, match="Pub/Sub call for .* failed.*not acknowledged.*next tick retries"):
        tick(defs, recorded.cursor)  # Pub/Sub is down: the tick fails, with the reason, well inside 60 s
    assert time.monotonic() - started < 40

    with local_server(emulator_command(port), port, env={}, what="the Pub/Sub emulator"):
        create_topic_and_subscription(topic, sub)  # the emulator keeps nothing across restarts
        publish(catalogue[1])
        recovered = tick(defs, recorded.cursor)  # the failed tick left the cursor as it was
    assert registered_tracks(DagsterInstance.get()) == [catalogue[0].track_id, catalogue[1].track_id]
    assert len(recovered.run_requests) == 1


def test_cli_publish_to_a_topic(cli, topics):
    publisher, subscriber, topic, sub, _, _ = topics
    code, out = cli("publish", "t1", "t2", "--feature", "speechiness", "--force", "--topic", f"{PROJECT}/{topic.rsplit('/', 1)[1]}")
    assert code == 0 and len(out["published"]) == 2
    received = subscriber.pull(subscription=sub, max_messages=10, timeout=10).received_messages
    bodies = sorted(json.loads(m.message.data)["track_id"] for m in received)
    assert bodies == ["t1", "t2"]
    assert json.loads(received[0].message.data)["features"] == ["speechiness"]


def test_output_topic_announces_each_recorded_feature(klio_env, catalogue, topics):
    publisher, subscriber, topic, sub, dead, _ = topics
    out_topic, out_sub = f"{topic}-out", f"{sub}-out"
    publisher.create_topic(name=out_topic)
    subscriber.create_subscription(name=out_sub, topic=out_topic)
    t = catalogue[0]
    publisher.publish(topic, json.dumps({"track_id": t.track_id, "uri": str(t.path), "features": ["energy"]}).encode()).result()
    defs = definitions(klio_env, sub, dead, output_topic=out_topic)
    result = tick(defs)
    (request,) = result.run_requests
    outcome = execute_run(defs.resolve_job_def("klio_features_job"), catalogue_of(defs), request)

    received = subscriber.pull(subscription=out_sub, max_messages=10, timeout=10).received_messages
    announced = sorted((m.message.attributes["feature"], m.message.attributes["track_id"]) for m in received)
    assert announced == sorted(outcome.computed) == sorted((f, t.track_id) for f in ("downsample", "beat_tracking", "energy"))
    assert {json.loads(m.message.data)["run_id"] for m in received} == {outcome.run_id}


def test_a_poison_message_is_dead_lettered_and_the_valid_one_after_it_goes_through(klio_env, catalogue, topics):
    """A 10 kB event 5,000 levels deep used to crash every tick (RecursionError) and stall the subscription."""
    publisher, subscriber, topic, sub, dead, dead_sub = topics
    poison = b'{"track_id": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    publisher.publish(topic, poison).result()
    publisher.publish(topic, b"", eventType="OBJECT_FINALIZE").result()  # a GCS notification whose body is the poison
    publisher.publish(topic, b"[" * 5000, eventType="OBJECT_FINALIZE").result()
    t = catalogue[0]
    publisher.publish(topic, json.dumps({"track_id": t.track_id, "uri": "/etc/hostname"}).encode()).result()
    publisher.publish(topic, json.dumps({"track_id": t.track_id, "uri": str(t.path)}).encode()).result()
    defs = definitions(klio_env, sub, dead)
    first = tick(defs)
    assert registered_tracks(DagsterInstance.get()) == [t.track_id] and len(first.run_requests) == 1
    dead_letters = subscriber.pull(subscription=dead_sub, max_messages=10, timeout=10).received_messages
    reasons = sorted(m.message.attributes["reason"] for m in dead_letters)
    assert len(reasons) == 4, reasons
    assert sum("nested 5001 levels deep" in r for r in reasons) == 1
    assert any("without bucketId/objectId" in r for r in reasons) and any("is outside the allowed source roots" in r for r in reasons)
    tick(defs, first.cursor)  # acknowledges the valid one; the dead letters were acknowledged at once
    assert empty(subscriber, sub)
