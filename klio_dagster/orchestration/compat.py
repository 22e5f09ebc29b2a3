"""Every private Dagster API klio-dagster uses, in one place.

Each name says why no public API serves. tests/test_compat.py imports this
module and exercises each name, so an upgrade that moves one fails there,
loudly, before anything else does.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from dagster import AssetKey

# Data and code versions are read from and written to materialisation tags. Dagster's public
# API exposes versions only through `DataVersion` on an output (one per output, not per
# partition of a batched run); the tag names are defined only in this private module.
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    DEFAULT_DATA_VERSION,
    NULL_DATA_VERSION,
    NULL_EVENT_POINTER,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)

# Executing a run request in this process and streaming its events to the instance without
# keeping them in memory. `execute_in_process` keeps every event of the run (memory grows
# with tracks) and cannot attach to a run created with our tags; no public API does both.
from dagster._core.definitions.job_base import InMemoryJob

# Dagster's partition status shows a partition as failed when a failed run planned it and did not
# materialise it; its own "failed to materialize" events are not stored by the OSS storages. A run
# over an arbitrary set of tracks has no partition, so Dagster plans none: the step reports the
# planned event of each pair that failed. No public API reports a planned event.
# Many materialisations of one asset stored in one write: Dagster batches events logged with batch
# metadata when DAGSTER_EVENT_BATCH_SIZE > 0, and Postgres stores a batch in one statement
# (`store_event_batch`; SQLite stores them one by one). A yielded event carries no batch metadata;
# only the step context's private event constructor takes it.
from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent, DagsterEventBatchMetadata
from dagster._core.execution.api import create_execution_plan, execute_run_iterator

# A run the CLI executes in its own process names the code location and job the UI knows it by, as a
# run the webserver or daemon launches does; `create_run_for_job` takes the origin, but the origin
# classes are not public.
from dagster._core.remote_origin import ManagedGrpcPythonEnvCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.event_log.base import EventLogStorage

# Every key of a dynamic partitions definition in keyset pages, fast. The public
# `get_paginated_dynamic_partitions` passes every key through SQLAlchemy's row objects (5.4 us a key
# against the driver's 1.6) and, on SQLite without statistics, its query sorts every key of the
# definition for each page (0.20 s a page of 10,000 at a million keys, 0.015 s by primary key).
# The table, and the storage's index connection that reads it and gives SQLite statistics, are not public.
from dagster._core.storage.event_log.schema import DynamicPartitionsTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

# Dagster's documented tag names (the run queue's priority, a backfill's ID): documented in
# the run-coordinator guide, exported only by the private `dagster._core.storage.tags`.
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    MAX_RETRIES_TAG,
    PARENT_RUN_ID_TAG,
    PARTITION_NAME_TAG,
    PRIORITY_TAG,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from klio_dagster.storage.sql import driver_tuples

if TYPE_CHECKING:
    from dagster import AssetExecutionContext, AssetMaterialization, AssetsDefinition, DagsterInstance

    from klio_dagster.core.graph import FeatureGraph
    from klio_dagster.tiers.base import Tier

# The feature graph a multi-asset computes, kept on the asset's own function so that any
# `Definitions` can be introspected for its feature graphs (the CLI's view of a location).
# `OpDefinition.compute_fn` is public, but the function it wraps (`DecoratedOpFunction
# .decorated_fn`) is not; asset metadata must be serialisable and cannot hold the graph.
_GRAPH_ATTRIBUTE = "klio_feature_graph"
_TIER_ATTRIBUTE = "klio_tier"


def attach_feature_graph(assets: AssetsDefinition, graph: FeatureGraph, tier: Tier) -> AssetsDefinition:
    """Mark ``assets`` as computing ``graph`` in ``tier``; returns ``assets``."""
    setattr(assets.node_def.compute_fn.decorated_fn, _GRAPH_ATTRIBUTE, graph)
    setattr(assets.node_def.compute_fn.decorated_fn, _TIER_ATTRIBUTE, tier)
    return assets


def _decorated_fn(assets: AssetsDefinition) -> object:
    return getattr(getattr(assets.node_def, "compute_fn", None), "decorated_fn", None)


def feature_graph_of(assets: AssetsDefinition) -> FeatureGraph | None:
    """The feature graph ``assets`` computes, or ``None`` for any other asset."""
    return getattr(_decorated_fn(assets), _GRAPH_ATTRIBUTE, None)


def tier_of(assets: AssetsDefinition) -> Tier:
    """The tier of the feature assets ``assets`` (see :func:`attach_feature_graph`)."""
    return getattr(_decorated_fn(assets), _TIER_ATTRIBUTE)


#: Events per batch when klio-dagster turns batching on (below it, a batch is one write).
EVENT_BATCH_SIZE_VARIABLE = "DAGSTER_EVENT_BATCH_SIZE"


def stores_event_batches(instance: DagsterInstance) -> bool:
    """Whether this process's instance writes a batch of events at once: batching on, and a storage that can."""
    size = os.environ.get(EVENT_BATCH_SIZE_VARIABLE, "0").strip()
    storage = type(instance.event_log_storage)
    return size.isdigit() and int(size) > 0 and storage.store_event_batch is not EventLogStorage.store_event_batch


def log_materialization_batch(context: AssetExecutionContext, materializations: Sequence[AssetMaterialization]) -> None:
    """Store ``materializations`` (of one asset) as one batch; see :func:`stores_event_batches`."""
    step = context.get_step_execution_context()
    batch = f"{context.run_id}:{uuid.uuid4().hex}"
    for i, materialization in enumerate(materializations):
        end = DagsterEventBatchMetadata(batch, is_end=i == len(materializations) - 1)
        DagsterEvent.asset_materialization(step, materialization, batch_metadata=end)


def report_failed_attempt(context: AssetExecutionContext, asset_key: AssetKey, partition: str) -> None:
    """Record that this run set out to materialise ``partition`` of ``asset_key`` (it shows failed once the run fails)."""
    planned = AssetMaterializationPlannedData(asset_key, partition=partition)
    step_key = context.get_step_execution_context().step.key
    context.instance.report_dagster_event(
        DagsterEvent.build_asset_materialization_planned_event(context.job_name, step_key, planned), run_id=context.run_id
    )


def dynamic_partition_pages(instance: DagsterInstance, name: str, page_size: int) -> Iterator[list[str]]:
    """The keys of the dynamic partitions definition ``name``, in the order they were added, ``page_size`` at a time.

    Keyset pages by storage ID, each read in its own connection: memory stays flat, and a key added
    while the pages are read is in a later page.
    """
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        yield from _public_dynamic_partition_pages(instance, name, page_size)
        return
    _analyze_dynamic_partitions(storage)
    table, last = DynamicPartitionsTable, -1
    while True:
        query = (
            sa.select(table.c.id, table.c.partition)
            .where(table.c.partitions_def_name == name, table.c.id > last)
            .order_by(table.c.id)
            .limit(page_size)
        )
        with storage.index_connection() as conn:
            rows = driver_tuples(conn, query)
        if rows:
            yield [key for _, key in rows]
        if len(rows) < page_size:
            return
        last = rows[-1][0]


def _public_dynamic_partition_pages(instance: DagsterInstance, name: str, page_size: int) -> Iterator[list[str]]:
    """:func:`dynamic_partition_pages` through the public API (storages that are not SQL)."""
    cursor = None
    while True:
        page = instance.get_paginated_dynamic_partitions(name, limit=page_size, ascending=True, cursor=cursor)
        if page.results:
            yield list(page.results)
        if not page.has_more:
            return
        cursor = page.cursor


def _analyze_dynamic_partitions(storage: SqlEventLogStorage) -> None:
    """On SQLite, give the planner statistics of the dynamic partitions table, once, so that pages are read by primary key.

    The statistics say that one definition holds most keys, which stays true as it grows; Postgres
    gathers its own.
    """
    with storage.index_connection() as conn:
        if conn.dialect.name != "sqlite":
            return
        has_statistics = conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first() and (
            conn.exec_driver_sql("SELECT 1 FROM sqlite_stat1 WHERE tbl = 'dynamic_partitions'").first()
        )
        if not has_statistics:
            conn.exec_driver_sql("ANALYZE dynamic_partitions")


#: The repository name of a code location loaded from a `Definitions` object.
SINGLE_REPOSITORY_NAME = "__repository__"


def remote_job_origin(location_name: str, job_name: str, *, module: str | None, python_file: str | None, working_directory: str) -> RemoteJobOrigin:
    """The origin of ``job_name`` in the workspace's code location ``location_name``, as ``dagster dev`` loads it."""
    target = LoadableTargetOrigin(
        executable_path=sys.executable, module_name=module, python_file=python_file, working_directory=working_directory
    )
    location = ManagedGrpcPythonEnvCodeLocationOrigin(target, location_name)
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, SINGLE_REPOSITORY_NAME), job_name)


__all__ = [
    "remote_job_origin",
    "RemoteJobOrigin",
    "MAX_RETRIES_TAG",
    "report_failed_attempt",
    "DEFAULT_DATA_VERSION",
    "NULL_DATA_VERSION",
    "NULL_EVENT_POINTER",
    "get_input_data_version_tag",
    "get_input_event_pointer_tag",
    "attach_feature_graph",
    "feature_graph_of",
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "BACKFILL_ID_TAG",
    "PARENT_RUN_ID_TAG",
    "PARTITION_NAME_TAG",
    "CODE_VERSION_TAG",
    "DATA_VERSION_TAG",
    "PRIORITY_TAG",
    "InMemoryJob",
    "create_execution_plan",
    "execute_run_iterator",
    "dynamic_partition_pages",
]
