"""The real daemon killed with SIGKILL twenty times while it ingests from the real Pub/Sub emulator.

Kills land at random moments of its ticks (between pull and record, between
record and acknowledgement, while runs are submitted). Afterwards every valid
message's track has each feature recorded exactly once, and every bad message
is dead-lettered: no message is lost and no pair is recorded twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance
from pubsub_emulator import PROJECT, create_topic_and_subscription, emulator_command
from servers import free_port, local_server

from examples.reference_graph import reference_graph
from klio_dagster.core.features import AUDIO
from klio_dagster.demo.catalogue import write_catalogue

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
KILLS = 20


def recorded(instance: DagsterInstance, features: list[str]) -> Counter:
    counts: Counter = Counter()
    for feature in features:
        for record in instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(feature)), limit=10_000).records:
            counts[(feature, record.partition_key)] += 1
    return counts


def start_daemon(log) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-m", "definitions"],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_twenty_daemon_kills_lose_no_message_and_record_no_pair_twice(klio_env, monkeypatch):
    from google.cloud import pubsub_v1

    port = free_port()
    host = f"127.0.0.1:{port}"
    with local_server(emulator_command(port), port, env={"PUBSUB_EMULATOR_HOST": host}, what="the Pub/Sub emulator"):
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
        topic, sub = f"projects/{PROJECT}/topics/kills", f"projects/{PROJECT}/subscriptions/kills"
        dead, dead_sub = f"projects/{PROJECT}/topics/kills-dead", f"projects/{PROJECT}/subscriptions/kills-dead"
        create_topic_and_subscription(topic, sub)
        create_topic_and_subscription(dead, dead_sub)
        monkeypatch.setenv("KLIO_PUBSUB_SUBSCRIPTION", sub)
        monkeypatch.setenv("KLIO_PUBSUB_DEAD_LETTER_TOPIC", dead)
        monkeypatch.setenv("KLIO_PUBSUB_ACK_DEADLINE_S", "10")
        tracks = write_catalogue(klio_env / "data" / "media", n_tracks=12, duration_s=3.0, prefix="kill")
        bad = [b"{not json", b'{"track_id": ' + b"[" * 5000 + b"]" * 5000 + b"}", json.dumps({"track_id": "x", "uri": "/etc/hostname"}).encode()]
        messages = [json.dumps({"track_id": t.track_id, "uri": str(t.path)}).encode() for t in tracks] + bad
        rng = random.Random(9)
        rng.shuffle(messages)
        publisher = pubsub_v1.PublisherClient()

        def publish() -> None:  # spread over the kills, so that ticks at every moment have messages
            for data in messages:
                publisher.publish(topic, data).result()
                time.sleep(rng.uniform(0.5, 5.0))

        publishing = threading.Thread(target=publish, daemon=True)
        publishing.start()
        log = open(klio_env / "daemon.log", "w")
        sessions: list[int] = []
        try:
            for _ in range(KILLS):
                daemon = start_daemon(log)
                sessions.append(daemon.pid)
                time.sleep(rng.uniform(2.0, 9.0))
                daemon.send_signal(signal.SIGKILL)
                daemon.wait()
            publishing.join()
            sessions.append(start_daemon(log).pid)
            features = reference_graph.descendants([AUDIO])
            expected = {(f, t.track_id) for f in features for t in tracks}
            instance, deadline = DagsterInstance.get(), time.monotonic() + 420
            while set(recorded(instance, features)) != expected and time.monotonic() < deadline:
                time.sleep(3)
            counts = recorded(instance, features)
        finally:
            for session in sessions:
                try:
                    os.killpg(session, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            log.close()
        missing = expected - set(counts)
        assert not missing, f"{len(missing)} pairs never recorded: {sorted(missing)[:10]}\n" + (klio_env / "daemon.log").read_text()[-4000:]
        assert set(counts) == expected and set(counts.values()) == {1}, {p: n for p, n in counts.items() if n > 1}
        subscriber = pubsub_v1.SubscriberClient()
        dead_letters = subscriber.pull(subscription=dead_sub, max_messages=100, timeout=10).received_messages
        assert {m.message.data for m in dead_letters} == set(bad)  # each bad message dead-lettered (perhaps twice)
