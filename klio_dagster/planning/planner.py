"""The planner: which (feature, track) pairs to compute, decided from lineage.

Pure functions over a :class:`FeatureLineage` per feature (what the event log
says exists); no Dagster here, so the semantics are tested in milliseconds on
hand-made lineage. :mod:`klio_dagster.planning.lineage` loads real lineage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from klio_dagster.core.graph import FeatureGraph
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

    Stale means made by another version (a code version, parameter, decode
    setting or library version of the feature or of any of its ancestors
    changed: :class:`~klio_dagster.core.graph.FeatureGraph` folds them into
    one version), or from inputs other than their current outputs (Dagster's
    rule, so the UI's "Unsynced" agrees): an input recomputed into different
    bytes makes its children stale, one recomputed into the same bytes does
    not, and an input with no materialisation at all (wiped) leaves its
    children as they are.
    """
    if lineage[feature].data_versions.get(track) is None:
        return "missing"
    return "materialized" if stale_cause(graph, lineage, feature, track) is None else "stale"


def stale_cause(graph: FeatureGraph, lineage: dict[str, FeatureLineage], feature: str, track: str) -> str | None:
    """Why a recorded pair is stale, in a sentence; ``None`` if it is current (or missing)."""
    version = lineage[feature].data_versions.get(track)
    if version is None:
        return None
    recorded, current = code_version_of(version), graph[feature].version
    if recorded != current:
        return f"made by version {recorded}, the feature is now version {current}"
    parents = graph.stored_inputs(feature)
    if not parents:
        return None
    marks = input_marks_of(version)
    if not marks:
        return "made before the versions of its inputs were recorded"
    if len(marks) != len(parents):
        return f"made from {len(marks)} inputs; it now reads {len(parents)} ({', '.join(parents)})"
    for parent, mark in zip(parents, marks):
        current_input = lineage[parent].data_versions.get(track) if parent in lineage else None
        if current_input is not None and input_mark(current_input) != mark:
            return f"its input {parent!r} has been recomputed into new data since"
    return None


def plan(
    graph: FeatureGraph,
    lineage: dict[str, FeatureLineage],
    features: Iterable[str],
    tracks: Sequence[str],
    *,
    force: Iterable[str] = (),
    bottom_up: bool = True,
    only: Iterable[str] | None = None,
) -> Plan:
    """Decide what to compute so that ``features`` exist and are current for ``tracks``.

    A requested feature is computed if it is missing, stale, forced, or if
    an input is computed in the same plan. With ``bottom_up`` its missing or
    stale ancestors are computed too (and only those: never siblings);
    without it, ancestors are only read. ``only`` (states: ``"missing"``,
    ``"stale"``) narrows the request to the pairs of requested features in
    those states, with what they need. ``lineage`` must cover every
    feature considered (see :func:`load_lineage`).
    """
    requested = graph.check_names(features)
    forced, states = set(force), None if only is None else set(only)
    closures: dict[frozenset[str], list[str]] = {}
    by_feature: dict[str, tuple[list[str], list[str]]] = {}
    for track in tracks:
        targets = frozenset(
            f for f in requested if states is None or state_of(graph, lineage, f, track) in states
        )
        if targets not in closures:
            closures[targets] = graph.with_ancestors(targets) if bottom_up else [f for f in requested if f in targets]
        computed: set[str] = set()
        for name in closures[targets]:
            needed = (
                (name in targets and name in forced)
                or any(p in computed for p in graph.stored_inputs(name))
                or state_of(graph, lineage, name, track) != "materialized"
            )
            if needed:
                computed.add(name)
            by_feature.setdefault(name, ([], []))[0 if needed else 1].append(track)
        for name in requested:
            if name not in closures[targets]:
                by_feature.setdefault(name, ([], []))[1].append(track)
    result = Plan()
    for name in graph.order:
        compute, skip = by_feature.get(name, ([], []))
        result.to_compute.extend((name, t) for t in compute)
        result.skipped.extend((name, t) for t in skip)
    return result
