"""``klio-dagster consume``: the ingestion sensor's tick, in the foreground, with the runs it asks for."""

from __future__ import annotations

import pytest

from examples.reference_graph import reference_graph
from klio_dagster.core.features import AUDIO
from klio_dagster.events.local_queue import LocalQueue
from klio_dagster.events.messages import TrackEvent

pytestmark = pytest.mark.integration


def test_consume_once_registers_dead_letters_computes_and_acknowledges(cli, klio_env, catalogue):
    queue = LocalQueue(klio_env / "queue")
    queue.publish_events([TrackEvent(t.track_id, uri=str(t.path)) for t in catalogue[:2]])
    queue.publish(b'{"track_id": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    queue.publish(TrackEvent("stolen", uri="/etc/hostname").to_json())
    code, out = cli("consume", "--once")
    assert code == 0, out
    assert sorted(out["registered"]) == sorted(t.track_id for t in catalogue[:2]) and out["messages"] == 4
    reasons = sorted(d["reason"] for d in out["dead_lettered"])
    assert "nested 5001 levels deep" in reasons[0] and "outside the allowed source roots" in reasons[1]
    features = reference_graph.descendants([AUDIO])
    assert sorted(map(tuple, out["computed"])) == sorted((f, t.track_id) for f in features for t in catalogue[:2])
    assert len(queue) == 0 and len(queue.dead_letters()) == 2

    code, out = cli("consume", "--once")  # nothing left: nothing done
    assert code == 0 and out["messages"] == 0 and out["computed"] == []


def test_consume_rejects_bad_options(cli):
    code, err = cli("consume", "--once", "--max-messages", "0")
    assert code == 2 and "--max-messages must be at least 1" in err
