"""Hostile and malformed events: no message stalls ingestion, no event reads a file outside the allowed roots."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from dagster import DagsterInstance

import definitions
from examples.reference_graph import reference_graph as graph
from klio_dagster.core.execution import TrackLimits, TrackTask, compute_track
from klio_dagster.errors import InvalidMessage, InvalidSourceUri
from klio_dagster.events.klio_messages import KlioMessage, parse_message
from klio_dagster.events.local_queue import LocalQueue
from klio_dagster.events.messages import MAX_JSON_DEPTH, TrackEvent, json_depth
from klio_dagster.orchestration.partitions import registered_tracks
from klio_dagster.orchestration.ticks import evaluate_tick
from klio_dagster.storage.registry import record_sources
from klio_dagster.storage.sources import SourcePolicy
from klio_dagster.storage.stores import LocalFeatureStore

DEEP = b'{"track_id": ' + b"[" * 5000 + b"]" * 5000 + b"}"


@pytest.mark.unit
def test_deep_nesting_is_an_invalid_message_not_a_crash():
    with pytest.raises(InvalidMessage, match="nested 5001 levels deep"):
        parse_message(DEEP, {}, graph)
    assert json_depth(b'{"a": "[[[[\\"[[", "b": [1]}') == 2  # brackets inside strings do not count
    assert MAX_JSON_DEPTH >= 2


def _seeds() -> list[tuple[bytes, dict[str, str]]]:
    klio = KlioMessage(version=KlioMessage.V2)
    klio.data.element = b"track-1"
    klio.metadata.intended_recipients.limited.recipients.add(job_name="speechiness")
    return [
        (json.dumps({"track_id": "track-1", "uri": "/a/b.wav", "features": ["energy"], "force": True}).encode(), {}),
        (klio.SerializeToString(), {}),
        (b"", {"track_id": "track-1", "features": "energy,speechiness", "force": "true"}),
        (b"", {"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "audio/track-1.wav"}),
    ]


def _mutate(rng: random.Random, data: bytes, attributes: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    data, attributes = bytearray(data), dict(attributes)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(8)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif kind == 2:
            del data[at : at + rng.randint(1, 16)]
        elif kind == 3:
            depth = rng.choice([10, 100, 1_000, 5_000])
            data[at:at] = rng.choice([b"[", b"{", b'{"a":']) * depth
        elif kind == 4:
            data[at:at] = rng.choice([b"1e999999", b"-0", b"\\ud800", b'"\xff\xfe"', b"NaN", b"9" * 5000, b"null"])
        elif kind == 5:
            data = bytearray(data * rng.randint(2, 50))
        elif kind == 6 and attributes:
            key = rng.choice(sorted(attributes))
            attributes[key] = rng.choice(["", "x" * 10_000, "../../etc", "\x00", "true,false", "🎵"])
        else:
            attributes[rng.choice(["eventType", "track_id", "force", "features", "bucketId", "objectId"])] = "\u202e"
    return bytes(data), attributes


@pytest.mark.unit
def test_ten_thousand_fuzzed_messages_are_parsed_or_rejected_never_crash():
    rng, seeds = random.Random(20261201), _seeds()
    outcomes = {"parsed": 0, "rejected": 0}
    crashes = []
    for _ in range(10_000):
        data, attributes = _mutate(rng, *rng.choice(seeds))
        try:
            parse_message(data, attributes, graph)
            outcomes["parsed"] += 1
        except InvalidMessage:
            outcomes["rejected"] += 1
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            crashes.append((data[:80], attributes, repr(exc)[:200]))
    assert crashes == []
    assert outcomes["parsed"] > 100 and outcomes["rejected"] > 1_000  # the fuzzer exercises both paths


def tick(cursor=None):
    return evaluate_tick(definitions.defs, "klio_features_local_ingestion", DagsterInstance.get(), cursor)


@pytest.fixture
def allowed(klio_env, monkeypatch) -> Path:
    root = klio_env / "allowed"
    root.mkdir()
    monkeypatch.setenv("KLIO_ALLOWED_SOURCES", f"{root},gs://our-bucket/audio")
    return root


@pytest.mark.sensor
def test_poison_and_hostile_events_are_dead_lettered_and_the_rest_go_through(klio_env, allowed, catalogue):
    good = allowed / "good.wav"
    good.write_bytes(catalogue[0].path.read_bytes())
    os.mkfifo(allowed / "fifo.wav")
    (allowed / "escape.wav").symlink_to("/etc/hostname")
    (allowed / "folder.wav").mkdir()
    queue = LocalQueue(klio_env / "queue")
    queue.publish(DEEP)
    hostile = {
        "etc": "/etc/hostname",
        "proc": "/proc/self/environ",
        "dotdot": f"file://{allowed}" + "/.." * 20 + "/etc/passwd",
        "zero": "/dev/zero",
        "fifo": str(allowed / "fifo.wav"),
        "symlink": str(allowed / "escape.wav"),
        "folder": str(allowed / "folder.wav"),
        "nul": str(allowed / "a\x00.wav"),
        "bucket": "gs://their-bucket/audio/x.wav",
        "prefix": "gs://our-bucket/private/x.wav",
        "gsdots": "gs://our-bucket/audio/../private/x.wav",
        "ghost": str(allowed / "ghost.wav"),
    }
    for track, uri in hostile.items():
        queue.publish(json.dumps({"track_id": track, "uri": uri}).encode())
    queue.publish_events([TrackEvent("good", uri=str(good)), TrackEvent("cloud", uri="gs://our-bucket/audio/x.wav")])

    result = tick()
    assert sorted(registered_tracks(DagsterInstance.get())) == ["cloud", "good"]
    assert len(result.run_requests) == 1
    reasons = dict(queue.dead_letters())
    assert len(reasons) == 1 + len(hostile)
    text = "\n".join(reasons.values())
    assert "nested 5001 levels deep" in text
    for needle in ("'/etc/hostname' is outside", "/proc/self/environ' (resolves to /proc/", "(resolves to /etc/passwd)",
                   "'/dev/zero' is outside", "fifo.wav is not a regular file", "escape.wav' (resolves to /etc/hostname)",
                   "folder.wav is not a regular file", "NUL byte", "their-bucket/audio/x.wav' is outside",
                   "our-bucket/private/x.wav' is outside", "'..' segments", "ghost.wav does not exist"):
        assert needle in text, needle
    assert len(tick(result.cursor).run_requests) == 0 and len(queue) == 0  # all acknowledged on the next tick


@pytest.mark.sensor
def test_a_message_that_breaks_planning_is_dead_lettered_alone(klio_env, allowed, catalogue):
    """A parser bug (here: a custom parser that lets an unknown feature through) fails that message only."""
    from dagster import build_sensor_context

    from klio_dagster.events.ingestion import ingest_messages
    from klio_dagster.orchestration.factory import find_feature_location

    location, _, _ = find_feature_location(definitions.defs)
    good = allowed / "good.wav"
    good.write_bytes(catalogue[0].path.read_bytes())
    messages = [TrackEvent("good", uri=str(good)), TrackEvent("bad", uri=str(good), features=("no_such_feature",))]
    with build_sensor_context(instance=DagsterInstance.get()) as context:
        ingested = ingest_messages(
            context, location, LocalFeatureStore(klio_env / "store"), messages, lambda m: m,
            policy=SourcePolicy.from_setting(str(allowed)), run_key_prefix="p", tags={},
        )
    assert [m.track_id for m, _ in ingested.dead] == ["bad"]
    assert "no_such_feature" in ingested.dead[0][1]
    assert len(ingested.run_requests) == 1 and ingested.new_tracks == ["good"]


@pytest.mark.unit
def test_sources_are_checked_again_when_read(tmp_path, catalogue):
    root = tmp_path / "allowed"
    root.mkdir()
    audio = root / "song.wav"
    audio.write_bytes(catalogue[0].path.read_bytes())
    policy = SourcePolicy.from_setting(str(root))
    store = LocalFeatureStore(tmp_path / "store")
    limits = TrackLimits(source_policy=policy)
    record_sources(store, {"event": policy.admit(str(audio))}, from_event=True)
    (ok,) = compute_track(TrackTask("event", ("downsample",)), graph, store, limits)
    assert ok.ok

    # After registration, the file is swapped for a symlink out of the roots: refused when read.
    audio.unlink()
    audio.symlink_to(catalogue[0].path)
    (refused,) = compute_track(TrackTask("event", ("downsample",)), graph, store, limits)
    assert "SourceNotAllowed" in refused.error and "outside the allowed source roots" in refused.error

    # A path a user registered by hand is trusted, but a FIFO is never read (no hang) and size is bounded.
    os.mkfifo(tmp_path / "pipe.wav")
    record_sources(store, {"pipe": str(tmp_path / "pipe.wav"), "big": str(catalogue[0].path)})
    (pipe,) = compute_track(TrackTask("pipe", ("downsample",)), graph, store, limits)
    assert "not a regular file" in pipe.error
    (big,) = compute_track(TrackTask("big", ("downsample",)), graph, store, TrackLimits(max_source_bytes=1000))
    assert "more than the 1000 allowed" in big.error
    with pytest.raises(InvalidSourceUri, match="no bucket"):
        SourcePolicy.from_setting("gs://")
