"""Lineage from Dagster's event log (the native tier's), and the planner run against any tier's lineage.

For each feature two batched queries (latest data version and latest storage
ID per partition), never one per track. A feature's data version holds its
code version, a digest of its bytes and marks of its inputs' data versions
(:mod:`klio_dagster.core.versions`), all read from one indexed tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from dagster import AssetKey, DagsterEventType, DagsterInstance

from klio_dagster.core.graph import FeatureGraph
from klio_dagster.orchestration.compat import DATA_VERSION_TAG
from klio_dagster.planning.planner import FeatureLineage, Plan, plan

if TYPE_CHECKING:
    from klio_dagster.tiers.base import Catalogue

#: Up to this many tracks (a page) are named in the query; more, and one query over all partitions is faster.
_MAX_FILTERED_PARTITIONS = 10_000

def load_lineage(
    instance: DagsterInstance, features: Iterable[str], tracks: Sequence[str] | None, *, storage_ids: bool = True
) -> dict[str, FeatureLineage]:
    """Latest materialisation state of ``features`` for ``tracks`` (``None``: all tracks).

    ``storage_ids=False`` leaves out the materialisations' storage IDs (planning needs only the
    data versions; recording needs the IDs for its input pointers): one query per feature, not two.
    """
    storage = instance.event_log_storage
    partitions = list(tracks) if tracks is not None and len(tracks) <= _MAX_FILTERED_PARTITIONS else None
    lineage = {}
    for name in features:
        key = AssetKey(name)
        tags = storage.get_latest_tags_by_partition(
            key, DagsterEventType.ASSET_MATERIALIZATION, [DATA_VERSION_TAG], asset_partitions=partitions
        )
        ids = storage.get_latest_storage_id_by_partition(
            key, DagsterEventType.ASSET_MATERIALIZATION, partitions=set(partitions) if partitions else None
        ) if storage_ids else {}
        lineage[name] = FeatureLineage(
            data_versions={t: v[DATA_VERSION_TAG] for t, v in tags.items() if DATA_VERSION_TAG in v},
            storage_ids=dict(ids),
        )
    return lineage


def plan_against(
    catalogue: Catalogue,
    graph: FeatureGraph,
    features: Iterable[str],
    tracks: Sequence[str],
    *,
    force: Iterable[str] = (),
    bottom_up: bool = True,
    only: Iterable[str] | None = None,
) -> Plan:
    """:func:`plan` against the catalogue's lineage of ``features`` and their ancestors."""
    requested = list(features)
    lineage = lineage_for(catalogue, graph, requested, tracks)
    return plan(graph, lineage, requested, tracks, force=force, bottom_up=bottom_up, only=only)


def lineage_for(
    catalogue: Catalogue, graph: FeatureGraph, features: Iterable[str], tracks: Sequence[str], *, pointers: bool = False
) -> dict[str, FeatureLineage]:
    """The lineage planning ``features`` needs: theirs, their ancestors' and other locations' inputs.

    ``pointers``: with what recording needs besides (see :meth:`~klio_dagster.tiers.base.Catalogue.lineage`).
    """
    return catalogue.lineage([*graph.with_ancestors(list(features)), *graph.external_names], tracks, pointers=pointers)
