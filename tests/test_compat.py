"""Every private Dagster API klio-dagster uses works as expected: an upgrade that moves one fails here first."""

from __future__ import annotations

import pytest
from dagster import AssetsDefinition, DagsterInstance, Definitions, asset, define_asset_job, in_process_executor

from klio_dagster.orchestration import compat

pytestmark = pytest.mark.unit


def test_every_name_resolves():
    for name in compat.__all__:
        assert getattr(compat, name) is not None, name


def test_tag_names_are_dagsters():
    assert compat.DATA_VERSION_TAG == "dagster/data_version"
    assert compat.CODE_VERSION_TAG == "dagster/code_version"
    assert compat.PRIORITY_TAG == "dagster/priority"
    assert compat.BACKFILL_ID_TAG == "dagster/backfill"


def test_a_feature_graph_rides_on_the_assets_function():
    from examples.reference_graph import reference_graph
    from klio_dagster.tiers import LedgerTier

    @asset
    def plain() -> None: ...

    assert isinstance(plain, AssetsDefinition)
    assert compat.feature_graph_of(plain) is None
    tier = LedgerTier(shards=8)
    assert compat.attach_feature_graph(plain, reference_graph, tier) is plain
    assert compat.feature_graph_of(plain) is reference_graph and compat.tier_of(plain) is tier


def test_a_run_executes_in_process_and_streams_to_the_instance(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))

    @asset
    def one() -> int:
        return 1

    job = Definitions(assets=[one], jobs=[define_asset_job("j", selection=[one], executor_def=in_process_executor)]).resolve_job_def("j")
    with DagsterInstance.ephemeral() as instance:
        plan = compat.create_execution_plan(job, run_config={}, instance_ref=None)
        run = instance.create_run_for_job(job_def=job, run_config={}, execution_plan=plan)
        events = list(compat.execute_run_iterator(compat.InMemoryJob(job), run, instance))
    assert any(e.event_type_value == "ASSET_MATERIALIZATION" for e in events)


def test_input_provenance_tags_are_what_dagsters_staleness_reads():
    from dagster import AssetKey
    from dagster._core.definitions.data_version import DataProvenance

    key = AssetKey("downsample")
    tags = {compat.CODE_VERSION_TAG: "1", compat.get_input_data_version_tag(key): "v", compat.get_input_event_pointer_tag(key): "7"}
    provenance = DataProvenance.from_tags(tags)
    assert provenance.input_data_versions[key].value == "v" and provenance.input_storage_ids[key] == 7
    assert compat.DEFAULT_DATA_VERSION.value == "INITIAL" and compat.NULL_EVENT_POINTER == "NULL"


def test_a_failed_attempt_reported_by_a_step_makes_its_partition_failed(tmp_path):
    from dagster import AssetKey, DynamicPartitionsDefinition, Failure, materialize
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    parts = DynamicPartitionsDefinition(name="p")

    @asset(partitions_def=parts)
    def other(context) -> None:
        compat.report_failed_attempt(context, AssetKey("other"), "b")  # a partition this run was not launched for
        raise Failure("b failed")

    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("p", ["a", "b"])
        assert not materialize([other], partition_key="a", instance=instance, raise_on_error=False).success
        value = get_and_update_asset_status_cache_value(instance, AssetKey("other"), parts)
        assert set(value.deserialize_failed_partition_subsets(parts).get_partition_keys()) == {"a", "b"}


@pytest.mark.parametrize("page_size", [3, 4, 10])
def test_dynamic_partitions_are_read_in_keyset_pages_by_primary_key(tmp_path, page_size):
    instance = DagsterInstance.local_temp(str(tmp_path))
    keys = [f"track-{i:02d}" for i in range(12)]
    instance.add_dynamic_partitions("tracks", keys[:6])
    instance.add_dynamic_partitions("other", ["o1", "o2"])
    instance.add_dynamic_partitions("tracks", keys[6:])
    pages = list(compat.dynamic_partition_pages(instance, "tracks", page_size))
    assert [k for page in pages for k in page] == keys and all(len(page) <= page_size for page in pages)
    assert pages == list(compat._public_dynamic_partition_pages(instance, "tracks", page_size))
    assert list(compat.dynamic_partition_pages(instance, "none", page_size)) == []
    with instance.event_log_storage.index_connection() as conn:  # SQLite was given statistics, so it reads pages by primary key
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT id, partition FROM dynamic_partitions WHERE partitions_def_name = 'tracks' AND id > 3 ORDER BY id LIMIT 5"
        ).fetchall()
    assert "PRIMARY KEY" in str(plan) and "TEMP B-TREE" not in str(plan), plan
