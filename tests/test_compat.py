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

    @asset
    def plain() -> None: ...

    assert isinstance(plain, AssetsDefinition)
    assert compat.feature_graph_of(plain) is None
    assert compat.attach_feature_graph(plain, reference_graph) is plain
    assert compat.feature_graph_of(plain) is reference_graph


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
