"""Runs as the UI launches them (one partition, a selection), lineage the UI believes, failures it shows."""

from __future__ import annotations

import pytest
from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, materialize
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value  # what the UI reads
from probe_features import schema_graph
from runs import catalogue_of, local_resources, run_plan

from examples.reference_graph import reference_graph
from klio_dagster import build_feature_definitions
from klio_dagster.orchestration.assets import build_feature_assets
from klio_dagster.orchestration.compat import get_input_data_version_tag, get_input_event_pointer_tag
from klio_dagster.orchestration.partitions import tracks_partitions
from klio_dagster.planning.lineage import plan_against
from klio_dagster.storage.registry import record_sources

pytestmark = pytest.mark.integration
#: The same semantics on both instance storages: SQLite (embedded) and a real Postgres server.
INSTANCE_STORAGES = ("sqlite", "postgres")


def ui_run(klio_env, track: str, *features: str):
    """What the UI's "Materialize" of ``features`` for one partition launches: that partition, that selection."""
    resources = local_resources(klio_env)
    assets = build_feature_assets(reference_graph)
    return materialize([assets], selection=[AssetKey(f) for f in features], partition_key=track,
                       instance=DagsterInstance.get(), resources=resources, raise_on_error=False)


def failed_and_materialized(instance: DagsterInstance, key: AssetKey) -> tuple[set[str], set[str]]:
    """The partitions the UI shows as failed and as materialised (Dagster's partition status cache)."""
    value = get_and_update_asset_status_cache_value(instance, key, tracks_partitions)
    failed = set(value.deserialize_failed_partition_subsets(tracks_partitions).get_partition_keys())
    materialized = set(value.deserialize_materialized_partition_subsets(tracks_partitions).get_partition_keys())
    return failed, materialized - failed


def recorded(instance: DagsterInstance, feature: str, track: str):
    records = instance.fetch_materializations(AssetRecordsFilter(AssetKey(feature), asset_partitions=[track]), limit=1).records
    return records[0] if records else None


def test_materialize_of_one_partition_in_the_ui_computes_its_missing_line_and_records_provenance(cli, ingested, klio_env):
    track = ingested[0]
    result = ui_run(klio_env, track, "energy")
    assert result.success
    instance = DagsterInstance.get()
    made = [(r.asset_key.path[-1], r.partition_key)
            for r in instance.get_records_for_run(result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records]
    assert made == [("downsample", track), ("beat_tracking", track), ("energy", track)]  # never siblings

    downsample, beats, energy = (recorded(instance, f, track) for f in ("downsample", "beat_tracking", "energy"))
    tags = energy.asset_materialization.tags
    assert tags[get_input_data_version_tag(AssetKey("beat_tracking"))] == beats.asset_materialization.tags["dagster/data_version"]
    assert tags[get_input_event_pointer_tag(AssetKey("beat_tracking"))] == str(beats.storage_id)
    assert tags[get_input_event_pointer_tag(AssetKey("downsample"))] == str(downsample.storage_id)
    assert get_input_data_version_tag(AssetKey("audio")) in downsample.asset_materialization.tags
    code, status = cli("status", track)
    assert {r["feature"]: (r["state"], r.get("stored")) for r in status if r["feature"] != "audio"} == {
        "downsample": ("materialized", "recorded"), "beat_tracking": ("materialized", "recorded"),
        "energy": ("materialized", "recorded"), "speechiness": ("missing", "absent"),
        "instrumentalness": ("missing", "absent"), "spectrogram": ("missing", "absent"),
    }


def test_an_output_lineage_never_recorded_is_never_read(cli, ingested, klio_env):
    track = ingested[1]
    stray = klio_env / "store" / "downsample" / f"{track}.wav"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"RIFF left by a crashed run")  # on disk at the predictable path, never recorded
    code, status = cli("status", track)
    assert next(r for r in status if r["feature"] == "downsample")["stored"] == "unrecorded"

    result = ui_run(klio_env, track, "speechiness")
    assert result.success
    code, status = cli("status", track)
    rows = {r["feature"]: r for r in status}
    assert (rows["downsample"]["state"], rows["downsample"]["stored"]) == ("materialized", "recorded")
    assert rows["speechiness"]["state"] == "materialized"


def test_a_parent_overwritten_outside_lineage_fails_its_child_with_what_to_do(cli, ingested, klio_env):
    track = ingested[2]
    assert cli("materialize", "downsample", "--tracks", track)[0] == 0
    (klio_env / "store" / "downsample" / f"{track}.wav").write_bytes(b"not what was recorded")
    code, status = cli("status", track)
    assert next(r for r in status if r["feature"] == "downsample")["stored"] == "differs"

    code, out = cli("materialize", "speechiness", "--tracks", track)
    assert code == 1
    (failure,) = out["failed"]
    assert failure["feature"] == "speechiness" and "InputMismatchError" in failure["error"]
    assert f"klio-dagster materialize downsample --tracks {track} --force" in failure["error"]


def test_failed_pairs_are_failed_partitions_until_recomputed(cli, catalogue, klio_env):
    broken = klio_env / "broken.flac"
    broken.write_bytes(b"fLaC" + bytes(range(256)) * 20)
    code, out = cli("ingest", str(catalogue[0].path), str(broken))
    good = catalogue[0].track_id
    code, out = cli("materialize", "speechiness", "--all-tracks")  # a run over a set of tracks: no partition tag
    assert code == 1
    instance = DagsterInstance.get()
    for feature in ("downsample", "speechiness"):
        failed, materialized = failed_and_materialized(instance, AssetKey(feature))
        assert failed == {"broken"} and materialized == {good}

    broken.write_bytes(next(t.path for t in catalogue if t.path.suffix == ".flac").read_bytes())
    code, out = cli("materialize", "speechiness", "--tracks", "broken")
    assert code == 0, out
    failed, materialized = failed_and_materialized(instance, AssetKey("speechiness"))
    assert failed == set() and materialized == {good, "broken"}


def test_schemas_are_asset_checks_that_name_the_tracks_that_failed(klio_env, catalogue):
    resources = local_resources(klio_env)
    defs = build_feature_definitions(schema_graph, name="probe", resources=resources)
    instance = DagsterInstance.get()
    sources = {"fine": str(catalogue[0].path), "neg-one": str(catalogue[1].path)}
    record_sources(resources["klio_store"].get_store(), sources)
    instance.add_dynamic_partitions("tracks", list(sources))
    outcome = run_plan(defs, plan_against(catalogue_of(defs), schema_graph, ["seconds"], list(sources)))
    assert [f["track"] for f in outcome.failed] == ["neg-one"] and "SchemaError" in outcome.failed[0]["error"]
    key = AssetCheckKey(AssetKey("seconds"), "schema")
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    evaluation = record.event.dagster_event.event_specific_data
    assert record.run_id == outcome.run_id and not evaluation.passed
    assert evaluation.metadata["tracks_validated"].value == 2 and list(evaluation.metadata["failed_tracks"].value) == ["neg-one"]
    failed, materialized = failed_and_materialized(instance, AssetKey("seconds"))
    assert (failed, materialized) == ({"neg-one"}, {"fine"})
