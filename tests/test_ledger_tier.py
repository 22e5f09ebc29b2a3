"""The ledger tier through Dagster: shard partitions, shard materialisations and checks, sensors, top-down.

The shared semantics (skip, force, ping, bottom-up, stale, isolation) run on both tiers in
test_semantics.py and test_lineage.py; these are what only the ledger tier does.
"""

from __future__ import annotations

import sys

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterEventType, DagsterInstance, materialize
from runs import catalogue_of, local_resources

import definitions
from examples.reference_graph import reference_graph
from klio_dagster import build_feature_assets
from klio_dagster.events.local_queue import LocalQueue
from klio_dagster.events.messages import TrackEvent
from klio_dagster.ledger import shard_key, shard_of
from klio_dagster.orchestration.runs import execute_run
from klio_dagster.orchestration.ticks import evaluate_tick
from klio_dagster.tiers import LedgerTier
from klio_dagster.tiers.ledger import SHARD_CHECK

pytestmark = pytest.mark.integration
INSTANCE_STORAGES = ("sqlite",)  # the ledger on Postgres: test_ledger.py and the ledger x Postgres semantics tests
SHARDS = 4


@pytest.fixture
def tier() -> str:
    return "ledger"


def latest_check(instance: DagsterInstance, feature: str, shard: str):
    key = AssetCheckKey(AssetKey(feature), SHARD_CHECK)
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
    return next(r.event.dagster_event.event_specific_data for r in records if r.partition == shard)


def test_a_shard_materialised_from_the_ui_computes_its_tracks_and_records_one_event_per_feature(cli, ingested, klio_env):
    shard = shard_of(ingested[0], SHARDS)
    members = sorted(t for t in ingested if shard_of(t, SHARDS) == shard)
    assets = build_feature_assets(reference_graph, tier=LedgerTier(shards=SHARDS))
    assert assets.partitions_def.get_partition_keys() == [shard_key(s, SHARDS) for s in range(SHARDS)]
    instance = DagsterInstance.get()
    result = materialize([assets], selection=[AssetKey("energy")], partition_key=shard_key(shard, SHARDS),
                         instance=instance, resources=local_resources(klio_env), raise_on_error=False)
    assert result.success
    records = instance.get_records_for_run(result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    made = [(m.asset_key.path[-1], m.partition, m.metadata["tracks_computed"].value)
            for m in (r.asset_materialization for r in records)]
    key = shard_key(shard, SHARDS)
    assert made == [("downsample", key, len(members)), ("beat_tracking", key, len(members)), ("energy", key, len(members))]
    assert not instance.get_dynamic_partitions("tracks")  # tracks are rows of the ledger, not partitions
    for track in ingested:
        _, status = cli("status", track)
        energy = next(r for r in status if r["feature"] == "energy")
        assert energy["state"] == ("materialized" if track in members else "missing"), track
    check = latest_check(instance, "energy", key)
    assert check.passed and check.metadata["shard_current"].value == len(members)


def test_a_shard_whose_tracks_failed_fails_its_check_until_they_are_recomputed(cli, catalogue, klio_env):
    broken = klio_env / "broken.flac"
    broken.write_bytes(b"fLaC" + bytes(range(256)) * 20)
    code, _ = cli("ingest", str(catalogue[0].path), str(broken))
    assert code == 0
    code, out = cli("materialize", "downsample", "--all-tracks")
    assert code == 1 and [f["track"] for f in out["failed"]] == ["broken"]
    instance = DagsterInstance.get()
    key = shard_key(shard_of("broken", SHARDS), SHARDS)
    check = latest_check(instance, "downsample", key)
    assert not check.passed and check.metadata["shard_failed"].value == 1 and "klio-dagster status" in check.description
    _, status = cli("status", "broken")
    row = next(r for r in status if r["feature"] == "downsample")
    assert row["state"] == "failed" and "cannot decode" in row["error"]

    broken.write_bytes(next(t.path for t in catalogue if t.path.suffix == ".flac").read_bytes())
    code, out = cli("materialize", "downsample", "--tracks", "broken")
    assert code == 0 and out["computed"] == [["downsample", "broken"]]
    assert latest_check(instance, "downsample", key).passed


def test_the_local_queue_sensor_registers_tracks_in_the_ledger_and_its_run_computes_them(klio_env, catalogue):
    import importlib

    defs = importlib.import_module("definitions").defs  # imported again for this test's tier
    assert defs is not definitions.defs
    LocalQueue(klio_env / "queue").publish_events(
        [TrackEvent(t.track_id, uri=str(t.path), features=("speechiness",)) for t in catalogue[:2]]
    )
    instance = DagsterInstance.get()
    result = evaluate_tick(defs, "klio_features_local_ingestion", instance)
    (request,) = result.run_requests
    catalogue_ = catalogue_of(defs)
    assert catalogue_.unregistered([t.track_id for t in catalogue[:3]]) == [catalogue[2].track_id]
    outcome = execute_run(defs.resolve_job_def("klio_features_job"), catalogue_, request)
    assert sorted(outcome.computed) == sorted(
        (f, t.track_id) for f in ("downsample", "speechiness") for t in catalogue[:2]
    )
    again = evaluate_tick(defs, "klio_features_local_ingestion", instance, cursor=result.cursor)
    assert again.run_requests == []


def test_a_ledger_registered_with_other_shards_is_refused_with_what_to_do(cli, ingested, monkeypatch):
    monkeypatch.setenv("KLIO_LEDGER_SHARDS", "7")
    monkeypatch.delitem(sys.modules, "definitions")  # the location reads its shard count when it is defined
    code, err = cli("status", ingested[0])
    assert code == 2 and "registered with 4 shards, not 7" in err and "KLIO_LEDGER_SHARDS" in err


def test_top_down_wakes_a_parents_tracks_from_its_shard_materialisations_in_one_batch(klio_env, catalogue):
    import importlib

    reference = importlib.import_module("definitions").defs
    harmony = importlib.import_module("examples.harmony").defs
    tracks = [t.track_id for t in catalogue[:3]]
    LocalQueue(klio_env / "queue").publish_events([TrackEvent(t.track_id, uri=str(t.path)) for t in catalogue[:3]])
    instance = DagsterInstance.get()
    (request,) = evaluate_tick(reference, "klio_features_local_ingestion", instance).run_requests
    assert not execute_run(reference.resolve_job_def("klio_features_job"), catalogue_of(reference), request).failed

    first = evaluate_tick(harmony, "harmony_features_top_down", instance)
    (child,) = first.run_requests  # the parent's shard materialisations name its three tracks: one run
    assert sorted(child.run_config["ops"]["harmony_features"]["config"]["tracks"]) == sorted(tracks)
    outcome = execute_run(harmony.resolve_job_def("harmony_features_job"), catalogue_of(harmony), child)
    assert sorted(outcome.computed) == sorted(("key", t) for t in tracks)
    assert evaluate_tick(harmony, "harmony_features_top_down", instance, cursor=first.cursor).run_requests == []


@pytest.mark.parametrize("tier", ["native"])  # the history is made in the native tier, then moved
def test_one_command_moves_a_native_history_into_the_ledger_tier(cli, catalogue, klio_env, monkeypatch, tier):
    broken = klio_env / "broken.flac"
    broken.write_bytes(b"fLaC" + bytes(range(256)) * 20)
    assert cli("ingest", *(str(t.path) for t in catalogue[:3]), str(broken))[0] == 0
    assert cli("materialize", "energy", "--all-tracks")[0] == 1  # broken fails
    assert cli("materialize", "speechiness", "--tracks", catalogue[0].track_id, "--ping")[0] == 0
    tracks = [t.track_id for t in catalogue[:3]] + ["broken"]
    before = {t: cli("status", t)[1] for t in tracks}
    _, explained = cli("explain", "energy", catalogue[1].track_id)

    code, err = cli("migrate-to-ledger", "--shards", "0")
    assert code == 2 and "positive number of shards" in err
    code, out = cli("migrate-to-ledger", "--shards", str(SHARDS))
    assert code == 0, out
    assert out["tracks"] == 4 and out["pairs"]["energy"] == 3 and out["failures"]["downsample"] == 1
    assert out["pings"]["speechiness"] == 1 and "KLIO_TIER=ledger" in out["next"]
    assert cli("migrate-to-ledger", "--shards", str(SHARDS))[1]["pairs"] == out["pairs"]  # again: harmless

    monkeypatch.setenv("KLIO_TIER", "ledger")
    monkeypatch.delitem(sys.modules, "definitions")
    shown = ("feature", "state", "stored", "code_version", "run_id", "uri", "error", "ping_decision")
    for track in tracks:
        _, after = cli("status", track)
        assert [{k: r.get(k) for k in shown} for r in after] == [{k: r.get(k) for k in shown} for r in before[track]], track
        for was, now in zip(before[track], after):
            assert (was.get("timestamp") is None) == (now.get("timestamp") is None)
            for key in ("compute_s", "sample_rate_hz", "params", "libraries", "version", "source_uri"):
                assert (was.get("metadata") or {}).get(key) == (now.get("metadata") or {}).get(key), (track, key)
    _, moved = cli("explain", "energy", catalogue[1].track_id)
    assert moved["data_version"] == explained["data_version"] and moved["run_id"] == explained["run_id"]
    assert [i["data_version"] for i in moved["inputs"] if i["feature"] != "audio"] == [
        i["data_version"] for i in explained["inputs"] if i["feature"] != "audio"
    ]
    code, out = cli("plan", "energy", "--all-tracks")  # what was current stays current: only the broken track's line
    assert code == 0 and out["to_compute"] == [["downsample", "broken"], ["beat_tracking", "broken"], ["energy", "broken"]]
