"""The planner: which (feature, track) pairs to compute, decided from lineage.

Dagster's event log is the record of what exists. For each feature the
planner makes two batched queries (latest data version and latest storage
ID per partition), never one per track. A feature's data version is
``"{code_version}:{content digest}"``, so the code version an output was
made with is read from an indexed tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dagster import AssetKey, DagsterEventType, DagsterInstance
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from .features import FeatureGraph
from .versions import code_version_of

#: Above this many tracks, one query over all partitions beats a huge IN clause.
_MAX_FILTERED_PARTITIONS = 500

Pair = tuple[str, str]


@dataclass(frozen=True)
class FeatureLineage:
    """What the event log says of one feature: per track, code version and storage ID."""

    code_versions: dict[str, str]
    storage_ids: dict[str, int]


def load_lineage(instance: DagsterInstance, features: Iterable[str], tracks: Sequence[str] | None) -> dict[str, FeatureLineage]:
    """Latest materialisation state of ``features`` for ``tracks`` (``None``: all tracks)."""
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
        )
        lineage[name] = FeatureLineage(
            code_versions={t: code_version_of(v[DATA_VERSION_TAG]) for t, v in tags.items() if DATA_VERSION_TAG in v},
            storage_ids=dict(ids),
        )
    return lineage


@dataclass
class Plan:
    """Pairs to compute and pairs reused, both in topological order (feature, then track)."""

    to_compute: list[Pair] = field(default_factory=list)
    skipped: list[Pair] = field(default_factory=list)

    def features_by_track(self) -> dict[str, tuple[str, ...]]:
        """For each track with work, the features to compute, in topological order."""
        by_track: dict[str, list[str]] = {}
        for feature, track in self.to_compute:
            by_track.setdefault(track, []).append(feature)
        return {t: tuple(fs) for t, fs in by_track.items()}

    @property
    def features(self) -> list[str]:
        return list(dict.fromkeys(f for f, _ in self.to_compute))

    def without(self, pairs: set[Pair]) -> Plan:
        """This plan with ``pairs`` (say, those another run is already making) moved to skipped."""
        return Plan(
            [p for p in self.to_compute if p not in pairs],
            self.skipped + [p for p in self.to_compute if p in pairs],
        )


def state_of(graph: FeatureGraph, lineage: dict[str, FeatureLineage], feature: str, track: str) -> str:
    """``"missing"``, ``"stale"`` or ``"materialized"`` for one pair, from lineage.

    Stale means made by another code version, or older than an input's
    latest materialisation.
    """
    record = lineage[feature]
    if track not in record.code_versions:
        return "missing"
    if record.code_versions[track] != graph[feature].code_version:
        return "stale"
    own_id = record.storage_ids.get(track, 0)
    for parent in graph[feature].inputs:
        if parent in lineage and lineage[parent].storage_ids.get(track, 0) > own_id:
            return "stale"
    return "materialized"


def plan(
    graph: FeatureGraph,
    lineage: dict[str, FeatureLineage],
    features: Iterable[str],
    tracks: Sequence[str],
    *,
    force: Iterable[str] = (),
    bottom_up: bool = True,
) -> Plan:
    """Decide what to compute so that ``features`` exist and are current for ``tracks``.

    A requested feature is computed if it is missing, stale, forced, or if
    an input is computed in the same plan. With ``bottom_up`` its missing or
    stale ancestors are computed too (and only those: never siblings);
    without it, ancestors are only read. ``lineage`` must cover every
    feature considered (see :func:`load_lineage`).
    """
    requested = graph.check_names(features)
    considered = graph.with_ancestors(requested) if bottom_up else requested
    wanted, forced = set(requested), set(force)
    by_feature: dict[str, tuple[list[str], list[str]]] = {f: ([], []) for f in considered}
    for track in tracks:
        computed: set[str] = set()
        for name in considered:
            needed = (
                (name in wanted and name in forced)
                or any(p in computed for p in graph[name].inputs)
                or state_of(graph, lineage, name, track) != "materialized"
            )
            if needed:
                computed.add(name)
            by_feature[name][0 if needed else 1].append(track)
    result = Plan()
    for name in considered:
        compute, skip = by_feature[name]
        result.to_compute.extend((name, t) for t in compute)
        result.skipped.extend((name, t) for t in skip)
    return result


def plan_from_log(
    instance: DagsterInstance,
    graph: FeatureGraph,
    features: Iterable[str],
    tracks: Sequence[str],
    *,
    force: Iterable[str] = (),
    bottom_up: bool = True,
) -> Plan:
    """:func:`plan` against the event log, loading the lineage of ``features`` and their ancestors."""
    requested = list(features)
    lineage = load_lineage(instance, [*graph.with_ancestors(requested), *graph.external_names], tracks)
    return plan(graph, lineage, requested, tracks, force=force, bottom_up=bottom_up)
