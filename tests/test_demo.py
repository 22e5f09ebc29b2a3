"""``klio-dagster demo``: every row filled on success, twice in a row; non-zero with the missing pairs named otherwise."""

from __future__ import annotations

import pytest

from examples.reference_graph import reference_graph

pytestmark = pytest.mark.integration

FEATURES = list(reference_graph.names)


def test_demo_twice_in_a_row_fills_every_row(cli, klio_env):
    for attempt in range(2):
        code, out = cli("demo", "--tracks", "3", "--duration", "4")
        assert code == 0, (attempt, out)
        assert out["missing"] == []
        assert [row["track"] for row in out["tracks"]] == ["demo-000-click", "demo-001-music", "demo-002-speech"]
        for row in out["tracks"]:
            assert all(row[f] not in (None, "MISSING", "FAILED", "STALE") for f in FEATURES), row
        assert out["tracks"][0]["beat_tracking"] == pytest.approx(72, abs=4)  # tempo_bpm, the click's true tempo


def test_demo_exits_1_and_names_every_pair_not_recorded(cli, klio_env, capsys):
    audio = klio_env / "data" / "media" / "demo"
    audio.mkdir(parents=True)
    (audio / "demo-001-music.flac").write_bytes(b"fLaC but not really")  # the demo keeps files already there
    code, out = cli("demo", "--tracks", "3", "--duration", "4")
    assert code == 1
    missing = {(m["feature"], m["track"]) for m in out["missing"]}
    assert missing == {(f, "demo-001-music") for f in FEATURES}
    assert all("AudioDecodeError" in m["state"] or "failed" in m["state"] for m in out["missing"]), out["missing"]
    assert {row["track"]: row["downsample"] for row in out["tracks"]}["demo-001-music"] == "FAILED"
    assert all(row[f] not in ("MISSING", "FAILED") for row in out["tracks"] if row["track"] != "demo-001-music" for f in FEATURES)


def test_a_run_left_in_progress_by_a_crash_is_named_and_the_demo_fails(cli, klio_env):
    """What a third demo after a crash did: the sensor saw the pairs as in flight, computed nothing, exit 0."""
    from dagster import AssetKey, DagsterInstance, DagsterRunStatus

    import definitions
    from klio_dagster import find_feature_location
    from klio_dagster.events.priority import LIVE_PRIORITY_TAGS

    location, job, _ = find_feature_location(definitions.defs)
    tracks = ["demo-000-click", "demo-001-music"]
    with DagsterInstance.get() as instance:
        crashed = instance.create_run_for_job(
            job_def=job,
            run_config=location.run_config(tracks, []),
            tags=LIVE_PRIORITY_TAGS,
            asset_selection=frozenset(AssetKey(f) for f in FEATURES),
            status=DagsterRunStatus.STARTED,
        )
    code, out = cli("demo", "--tracks", "2", "--duration", "4")
    assert code == 1
    assert {(m["feature"], m["track"]) for m in out["missing"]} == {(f, t) for f in FEATURES for t in tracks}
    assert out["in_flight_runs"] == [crashed.run_id]


def test_demo_refuses_to_publish_tracks_its_events_may_not_name(cli, klio_env, monkeypatch):
    monkeypatch.setenv("KLIO_ALLOWED_SOURCES", str(klio_env / "elsewhere"))
    code, err = cli("demo", "--tracks", "1", "--duration", "2")
    assert code == 2 and "add it to KLIO_ALLOWED_SOURCES" in err
    assert not (klio_env / "data" / "media" / "demo").exists()
