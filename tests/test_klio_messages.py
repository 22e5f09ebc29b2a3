"""Klio's KlioMessage (v1, v2) and GCS upload notifications, parsed into track events."""

from __future__ import annotations

import json
import re

import pytest

from examples.reference_graph import reference_graph as graph
from klio_dagster.errors import InvalidMessage
from klio_dagster.events.klio_messages import KlioMessage, parse_gcs_notification, parse_klio_message
from klio_dagster.events.proto import klio_pb2

pytestmark = pytest.mark.unit

JOBS = {"my-project-beat-tracker": "beat_tracking", "energy-job": "energy"}


def job(name: str, project: str = "") -> klio_pb2.KlioJob:
    return klio_pb2.KlioJob(job_name=name, gcp_project=project)


def v2(track: bytes = b"track-1", **metadata) -> KlioMessage:
    message = KlioMessage(version=KlioMessage.V2)
    message.data.element = track
    for key, value in metadata.items():
        setattr(message.metadata, key, value)
    return message


def test_v1_without_downstream_is_top_down():
    message = KlioMessage(version=KlioMessage.V1)
    message.data.entity_id = "track-1"
    message.metadata.force = True
    event = parse_klio_message(message.SerializeToString(), graph, JOBS)
    assert (event.track_id, event.features, event.force, event.ping) == ("track-1", (), True, False)


def test_v1_downstream_jobs_become_bottom_up_features():
    message = KlioMessage()  # version unset, entity_id only: v1, as in Klio
    message.data.entity_id = "track-2"
    message.metadata.downstream.extend([job("beat-tracker", "my-project"), job("speechiness")])
    event = parse_klio_message(message.SerializeToString(), graph, JOBS)
    assert event.features == ("beat_tracking", "speechiness")


def test_v2_anyone_is_top_down_and_ping_carries_over():
    message = v2(ping=True)
    message.metadata.intended_recipients.anyone.SetInParent()
    event = parse_klio_message(message.SerializeToString(), graph, JOBS)
    assert (event.track_id, event.features, event.ping) == ("track-1", (), True)


def test_v2_limited_recipients_and_trigger_children_of():
    message = v2()
    limited = message.metadata.intended_recipients.limited
    limited.recipients.append(job("energy-job"))
    limited.trigger_children_of.CopyFrom(job("downsample"))
    event = parse_klio_message(message.SerializeToString(), graph, JOBS)
    assert event.features == graph.names  # downsample and everything below it, energy included


def test_v2_limited_only_recipients():
    message = v2()
    message.metadata.intended_recipients.limited.recipients.append(job("energy-job"))
    assert parse_klio_message(message.SerializeToString(), graph, JOBS).features == ("energy",)


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: v2(), "no intended recipients"),
        (lambda: v2(track=b"../../etc"), "valid track ID"),
        (lambda: v2(track=b"\xff\xfe"), "valid track ID"),
        (lambda: _limited_to("unknown-job"), "maps to no feature"),
    ],
)
def test_bad_klio_messages_are_rejected_with_a_reason(build, reason):
    with pytest.raises(InvalidMessage, match=reason):
        parse_klio_message(build().SerializeToString(), graph, JOBS)


def _limited_to(name: str):
    message = v2()
    message.metadata.intended_recipients.limited.recipients.append(job(name))
    return message


def test_bytes_that_are_not_a_klio_message():
    with pytest.raises(InvalidMessage, match="not a KlioMessage"):
        parse_klio_message(b"\x0a\xff\xff\xff", graph, JOBS)


def test_gcs_upload_notification():
    attributes = {"eventType": "OBJECT_FINALIZE", "bucketId": "audio", "objectId": "uploads/2026/song-42.flac"}
    event = parse_gcs_notification(attributes, b"{}")
    assert (event.track_id, event.uri, event.features) == ("song-42", "gs://audio/uploads/2026/song-42.flac", ())


def test_gcs_notification_track_id_rule_and_body_fallback():
    rule = re.compile(r"catalogue/(?P<track_id>[A-Za-z0-9]+)/master\.wav")
    body = json.dumps({"bucket": "audio", "name": "catalogue/T123/master.wav"}).encode()
    event = parse_gcs_notification({"eventType": "OBJECT_FINALIZE"}, body, rule)
    assert (event.track_id, event.uri) == ("T123", "gs://audio/catalogue/T123/master.wav")
    with pytest.raises(InvalidMessage, match="does not match the track ID rule"):
        parse_gcs_notification({"eventType": "OBJECT_FINALIZE", "bucketId": "a", "objectId": "other/x.wav"}, b"", rule)


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"eventType": "OBJECT_DELETE", "bucketId": "a", "objectId": "x.wav"}, "not an upload"),
        ({"eventType": "OBJECT_FINALIZE"}, "without bucketId/objectId"),
        ({"eventType": "OBJECT_FINALIZE", "bucketId": "a", "objectId": "my song.wav"}, "invalid track ID"),
    ],
)
def test_bad_gcs_notifications(attributes, reason):
    with pytest.raises(InvalidMessage, match=reason):
        parse_gcs_notification(attributes, b"not json")
