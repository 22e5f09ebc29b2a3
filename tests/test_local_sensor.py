"""The local-queue ingestion sensor: batching, dead letters, acknowledgement after recording."""

from __future__ import annotations

import json

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from runs import catalogue_of

import definitions
from examples.reference_graph import reference_graph
from klio_dagster.events.local_queue import LocalQueue
from klio_dagster.events.messages import TrackEvent
from klio_dagster.orchestration.partitions import registered_tracks
from klio_dagster.orchestration.runs import execute_run
from klio_dagster.orchestration.ticks import evaluate_tick

pytestmark = pytest.mark.sensor


def tick(cursor=None):
    return evaluate_tick(definitions.defs, "klio_features_local_ingestion", DagsterInstance.get(), cursor)


def test_messages_become_partitions_and_one_batched_run(klio_env, catalogue):
    queue = LocalQueue(klio_env / "queue")
    queue.publish_events([TrackEvent(t.track_id, uri=str(t.path)) for t in catalogue[:4]])
    queue.publish(b"{not json")
    queue.publish(json.dumps({"track_id": "../../etc/passwd", "uri": "/x.wav"}).encode())
    queue.publish(json.dumps({"track_id": "ok-id", "features": ["nope"], "uri": "/x.wav"}).encode())
    queue.publish(json.dumps({"track_id": "ok-id", "force": "yes", "uri": "/x.wav"}).encode())
    queue.publish(json.dumps({"track_id": "no-source-anywhere"}).encode())

    result = tick()
    assert sorted(registered_tracks(DagsterInstance.get())) == sorted(t.track_id for t in catalogue[:4])
    (run,) = result.run_requests  # four top-down events: one run
    config = run.run_config["ops"]["klio_features"]["config"]
    assert sorted(config["tracks"]) == sorted(t.track_id for t in catalogue[:4])
    assert {k.path[-1] for k in run.asset_selection} == set(reference_graph.names)

    reasons = [reason for _, reason in queue.dead_letters()]
    assert len(reasons) == 5
    assert any("not valid JSON" in r for r in reasons)
    assert any("invalid track ID" in r for r in reasons)
    assert any("unknown feature" in r for r in reasons)
    assert any("'force' must be a bool" in r for r in reasons)
    assert any("no registered source" in r for r in reasons)

    # Nothing is acknowledged until the next tick, which carries the stored cursor.
    assert len(queue) == 9
    again = tick(result.cursor)
    assert again.run_requests == [] and len(queue) == 0


def test_duplicate_events_after_materialisation_make_no_run(klio_env, catalogue):
    queue = LocalQueue(klio_env / "queue")
    event = TrackEvent(catalogue[0].track_id, uri=str(catalogue[0].path), features=("speechiness",))
    queue.publish_events([event])
    first = tick()
    job = definitions.defs.resolve_job_def("klio_features_job")
    (run,) = first.run_requests
    outcome = execute_run(job, catalogue_of(definitions.defs), run)
    assert sorted(outcome.computed) == [("downsample", event.track_id), ("speechiness", event.track_id)]

    queue.publish_events([event, event])  # redelivered / duplicated
    second = tick(first.cursor)
    assert second.run_requests == []


def test_cli_publish_to_the_local_queue_feeds_the_sensor(cli, klio_env, catalogue):
    track = catalogue[0]
    code, out = cli("publish", track.track_id, "--uri", str(track.path), "--feature", "energy", "--local")
    assert code == 0 and out["published"][0]["track_id"] == track.track_id
    (run,) = tick().run_requests
    assert run.tags["klio/mode"] == "bottom-up"
    assert {k.path[-1] for k in run.asset_selection} == {"downsample", "beat_tracking", "energy"}
    for args in (("publish", "a/b"), ("publish", "t", "--feature", "nope"), ("publish", "t1", "t2", "--uri", "/x.wav"),
                 ("publish", "t", "--topic", "no-slash")):
        code, err = cli(*args)
        assert code == 2, args
    assert len(LocalQueue(klio_env / "queue")) == 1


def test_events_for_work_already_queued_make_no_second_run(klio_env, catalogue):
    """A redelivered event (say its acknowledgement failed) whose run is queued, not yet run."""
    queue = LocalQueue(klio_env / "queue")
    instance = DagsterInstance.get()
    a, b = catalogue[0], catalogue[1]
    queue.publish_events([TrackEvent(a.track_id, uri=str(a.path))])
    (queued,) = tick().run_requests
    job = definitions.defs.resolve_job_def("klio_features_job")
    selection = frozenset(queued.asset_selection)
    instance.create_run_for_job(  # what the daemon records for the request, before it queues it
        job_def=job.get_subset(asset_selection=selection),
        run_config=queued.run_config,
        tags=queued.tags,
        asset_selection=selection,
        status=DagsterRunStatus.NOT_STARTED,
    )

    queue.publish_events([TrackEvent(a.track_id), TrackEvent(b.track_id, uri=str(b.path))])
    (request,) = tick().run_requests  # no cursor: A's first message comes back too
    assert request.run_config["ops"]["klio_features"]["config"]["tracks"] == [b.track_id]

    queue.publish_events([TrackEvent(a.track_id, force=True)])  # force still recomputes
    forced = [r for r in tick().run_requests if r.run_config["ops"]["klio_features"]["config"]["force_features"]]
    assert forced and a.track_id in forced[0].run_config["ops"]["klio_features"]["config"]["tracks"]
