"""The planner: which (feature, track) pairs to compute, decided from lineage.

Pure functions over a :class:`FeatureLineage` per feature (what the event log
says exists); no Dagster here, so the semantics are tested in milliseconds on
hand-made lineage. :mod:`klio_dagster.planning.lineage` loads real lineage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from klio_dagster.core.features import Feature, FeatureGraph
from klio_dagster.core.versions import code_version_of, input_mark, input_marks_of

Pair = tuple[str, str]


@dataclass(frozen=True)
class FeatureLineage:
    """What the event log says of one feature: per track, the latest data version and its storage ID."""

    data_versions: dict[str, str]
    storage_ids: dict[str, int]


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

    Stale means made by another code version, or from inputs other than their
    current outputs (Dagster's rule, so the UI's "Unsynced" agrees): an input
    recomputed into different bytes makes its children stale, one recomputed
    into the same bytes does not, and an input with no materialisation at all
    (wiped) leaves its children as they are.
    """
    version = lineage[feature].data_versions.get(track)
    if version is None:
        return "missing"
    if code_version_of(version) != graph[feature].code_version:
        return "stale"
    return "materialized" if _made_from_current_inputs(graph[feature], lineage, track, version) else "stale"


def _made_from_current_inputs(feature: Feature, lineage: dict[str, FeatureLineage], track: str, version: str) -> bool:
    parents = sorted(feature.inputs)
    if not parents:
        return True
    marks = input_marks_of(version)
    if len(marks) != len(parents):
        return False  # made before input versions were recorded, or from other inputs
    for parent, mark in zip(parents, marks):
        current = lineage[parent].data_versions.get(track) if parent in lineage else None
        if current is not None and input_mark(current) != mark:
            return False
    return True


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
