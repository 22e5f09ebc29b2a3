"""Untrusted input: track IDs and JSON event messages."""

from __future__ import annotations

import json

import pytest
from dagster import DagsterInstance

from klio_dagster import InvalidTrackId, validate_track_id
from klio_dagster.core.tracks import track_id_from_path
from klio_dagster.errors import InvalidMessage
from klio_dagster.events.messages import MAX_MESSAGE_BYTES, parse_json_event
from klio_dagster.orchestration.partitions import register_tracks, registered_tracks

pytestmark = pytest.mark.unit

FEATURES = ("downsample", "energy")


@pytest.mark.parametrize("good", ["a", "A1", "spotify.track-01_x", "9" * 128, "a.b.c"])
def test_valid_track_ids(good):
    assert validate_track_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", ".hidden", "-dash", "a..b", "../x", "a/b", "a\\b", "a b", "tëst", "x" * 129, "a\nb", "%2e%2e", None, 7]
)
def test_invalid_track_ids(bad):
    with pytest.raises(InvalidTrackId):
        validate_track_id(bad)


def test_track_id_from_path():
    assert track_id_from_path("/music/My_Song-01.flac") == "My_Song-01"
    with pytest.raises(InvalidTrackId):
        track_id_from_path("/music/my song.wav")


def test_register_is_chunked_and_idempotent(klio_env, monkeypatch):
    monkeypatch.setattr("klio_dagster.orchestration.partitions.PARTITION_ADD_CHUNK", 7)
    instance = DagsterInstance.get()
    ids = [f"t{i:03d}" for i in range(20)]
    assert register_tracks(instance, ids) == ids
    assert register_tracks(instance, ids[:5] + ["new"]) == ["new"]
    assert registered_tracks(instance) == ids + ["new"]


def test_json_event_full():
    body = {"track_id": "t1", "uri": "gs://b/t1.wav", "features": ["energy"], "force": True, "ping": False}
    event = parse_json_event(json.dumps(body).encode(), FEATURES)
    assert (event.track_id, event.uri, event.features, event.force, event.ping) == ("t1", "gs://b/t1.wav", ("energy",), True, False)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"uri": "x"}', "missing field 'track_id'"),
        (b'{"track_id": "a/../b"}', "invalid track ID"),
        (b'{"track_id": 5}', "must be a str"),
        (b'{"track_id": "t", "features": "energy"}', "must be a list"),
        (b'{"track_id": "t", "features": ["beats"]}', "unknown feature"),
        (b'{"track_id": "t", "colour": "red"}', "unknown field"),
        (b'{"track_id": "t", "ping": 1}', "must be a bool"),
        (b'{"track_id": "t", "uri": "' + b"x" * MAX_MESSAGE_BYTES + b'"}', "more than"),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason(data, reason):
    with pytest.raises(InvalidMessage, match=reason):
        parse_json_event(data, FEATURES)


def test_asking_about_a_few_tracks_never_lists_the_catalogue(monkeypatch):
    from klio_dagster.orchestration.partitions import LOOKUP_LIMIT, unregistered

    with DagsterInstance.ephemeral() as instance:
        register_tracks(instance, [f"t{i}" for i in range(50)])
        listings = []
        real = instance.get_dynamic_partitions
        monkeypatch.setattr(instance, "get_dynamic_partitions", lambda name: listings.append(name) or real(name))
        assert unregistered(instance, ["t3", "nope", "t49"]) == ["nope"]
        assert register_tracks(instance, ["t1", "t50"]) == ["t50"]
        assert listings == []  # one indexed lookup per track, whatever the catalogue's size
        many = [f"x{i}" for i in range(LOOKUP_LIMIT + 1)]
        assert unregistered(instance, many) == many and listings == ["tracks"]  # beyond the limit: one listing
