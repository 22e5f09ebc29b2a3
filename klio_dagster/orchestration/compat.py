"""Every private Dagster API klio-dagster uses, in one place.

Each name says why no public API serves. tests/test_compat.py imports this
module and exercises each name, so an upgrade that moves one fails there,
loudly, before anything else does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Data and code versions are read from and written to materialisation tags. Dagster's public
# API exposes versions only through `DataVersion` on an output (one per output, not per
# partition of a batched run); the tag names are defined only in this private module.
from dagster._core.definitions.data_version import CODE_VERSION_TAG, DATA_VERSION_TAG

# Executing a run request in this process and streaming its events to the instance without
# keeping them in memory. `execute_in_process` keeps every event of the run (memory grows
# with tracks) and cannot attach to a run created with our tags; no public API does both.
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import create_execution_plan, execute_run_iterator

# Dagster's documented tag names (the run queue's priority, a backfill's ID): documented in
# the run-coordinator guide, exported only by the private `dagster._core.storage.tags`.
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    PARENT_RUN_ID_TAG,
    PARTITION_NAME_TAG,
    PRIORITY_TAG,
)

if TYPE_CHECKING:
    from dagster import AssetsDefinition

    from klio_dagster.core.features import FeatureGraph

# The feature graph a multi-asset computes, kept on the asset's own function so that any
# `Definitions` can be introspected for its feature graphs (the CLI's view of a location).
# `OpDefinition.compute_fn` is public, but the function it wraps (`DecoratedOpFunction
# .decorated_fn`) is not; asset metadata must be serialisable and cannot hold the graph.
_GRAPH_ATTRIBUTE = "klio_feature_graph"


def attach_feature_graph(assets: AssetsDefinition, graph: FeatureGraph) -> AssetsDefinition:
    """Mark ``assets`` as computing ``graph``; returns ``assets``."""
    setattr(assets.node_def.compute_fn.decorated_fn, _GRAPH_ATTRIBUTE, graph)
    return assets


def feature_graph_of(assets: AssetsDefinition) -> FeatureGraph | None:
    """The feature graph ``assets`` computes, or ``None`` for any other asset."""
    fn = getattr(getattr(assets.node_def, "compute_fn", None), "decorated_fn", None)
    return getattr(fn, _GRAPH_ATTRIBUTE, None)


__all__ = [
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
]
