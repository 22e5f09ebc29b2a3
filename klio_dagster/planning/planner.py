"""The planner: which (feature, track) pairs to compute, decided from lineage.

Pure functions over a :class:`FeatureLineage` per feature (what the event log
says exists); no Dagster here, so the semantics are tested in milliseconds on
hand-made lineage. :mod:`klio_dagster.planning.lineage` loads real lineage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from klio_dagster.core.graph import FeatureGraph
from klio_dagster.core.versions import code_version_and_marks, code_version_of, input_mark, input_marks_of, joined_marks

Pair = tuple[str, str]


@dataclass(frozen=True)
class FeatureLineage:
    """What the event log says of one feature: per track, the latest data version and its storage ID."""

    data_versions: dict[str, str]
    storage_ids: dict[str, int]


@dataclass
class Plan:
    """Per feature (in topological order), the tracks to compute and the tracks reused, each in request order.

    A feature appears only with tracks. ``to_compute`` and ``skipped`` list the same as
    ``(feature, track)`` pairs.
    """

    compute: dict[str, list[str]] = field(default_factory=dict)
    skip: dict[str, list[str]] = field(default_factory=dict)
    #: How many tracks have something to compute (the planner knows; otherwise counted).
    tracks_with_work: int = field(default=-1, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.tracks_with_work < 0:
            self.tracks_with_work = len({t for tracks in self.compute.values() for t in tracks})

    @classmethod
    def of_pairs(cls, to_compute: Iterable[Pair] = (), skipped: Iterable[Pair] = ()) -> Plan:
        """The plan of these pairs (already in topological order)."""
        return cls(_by_feature(to_compute), _by_feature(skipped))

    @property
    def to_compute(self) -> list[Pair]:
        return [(f, t) for f, tracks in self.compute.items() for t in tracks]

    @property
    def skipped(self) -> list[Pair]:
        return [(f, t) for f, tracks in self.skip.items() for t in tracks]

    def features_by_track(self) -> dict[str, tuple[str, ...]]:
        """For each track with work, the features to compute, in topological order."""
        by_track: dict[str, list[str]] = {}
        for feature, tracks in self.compute.items():
            for track in tracks:
                by_track.setdefault(track, []).append(feature)
        return {t: tuple(fs) for t, fs in by_track.items()}

    @property
    def features(self) -> list[str]:
        return list(self.compute)

    def without(self, pairs: set[Pair]) -> Plan:
        """This plan with ``pairs`` (say, those another run is already making) moved to skipped."""
        compute: dict[str, list[str]] = {}
        skip = {f: list(tracks) for f, tracks in self.skip.items()}
        for feature, tracks in self.compute.items():
            if kept := [t for t in tracks if (feature, t) not in pairs]:
                compute[feature] = kept
            if moved := [t for t in tracks if (feature, t) in pairs]:
                skip.setdefault(feature, []).extend(moved)
        return Plan(compute, skip)


def _by_feature(pairs: Iterable[Pair]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for feature, track in pairs:
        grouped.setdefault(feature, []).append(track)
    return grouped


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


_MISSING, _STALE, _CURRENT = "missing", "stale", "materialized"
#: A column's states, one byte per track.
_CODES = {_CURRENT: 0, _STALE: 1, _MISSING: 2}
_IS_CURRENT, _IS_STALE, _IS_MISSING = (np.int8(c) for c in _CODES.values())


class _States:
    """The state of every pair of a page, computed one feature (column) at a time and kept.

    The same answer as :func:`state_of` per pair. A column starts missing and only the
    pairs with a recorded output are read (in Python); the rest is array arithmetic.
    """

    def __init__(self, graph: FeatureGraph, lineage: dict[str, FeatureLineage], tracks: Sequence[str]):
        self.graph, self.lineage, self.tracks = graph, lineage, tracks
        self._index = {t: i for i, t in enumerate(tracks)}
        self._states: dict[str, np.ndarray] = {}
        self._marks: dict[str, dict[int, str]] = {}

    def recorded(self, name: str) -> list[tuple[int, str]]:
        """``(position, data version)`` of the page's tracks with an output of ``name`` recorded."""
        versions = self.lineage[name].data_versions if name in self.lineage else {}
        if len(versions) <= len(self.tracks):
            index = self._index
            return [(i, v) for t, v in versions.items() if (i := index.get(t)) is not None]
        return [(i, v) for i, t in enumerate(self.tracks) if (v := versions.get(t)) is not None]

    def marks(self, name: str) -> dict[int, str]:
        """The mark of the current output of ``name``, by position (absent: none recorded)."""
        if name not in self._marks:
            self._marks[name] = {i: input_mark(v) for i, v in self.recorded(name)}
        return self._marks[name]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._states:
            self._states[name] = self._column(name)
        return self._states[name]

    def _column(self, name: str) -> np.ndarray:
        current, parents = self.graph[name].version, self.graph.stored_inputs(name)
        expected = self._expected_marks(parents)
        fresh, stale = [], []
        for i, version in self.recorded(name):
            made_by, made_from = code_version_and_marks(version)
            if made_by != current:
                stale.append(i)
            elif not parents:
                fresh.append(i)
            elif (want := expected.get(i)) is not None:  # every input recorded: the marks must be theirs
                (fresh if made_from == want else stale).append(i)
            elif len(marks := input_marks_of(version)) != len(parents):  # none recorded, or another number of inputs
                stale.append(i)
            elif any((m := self.marks(p).get(i)) is not None and m != mark for p, mark in zip(parents, marks)):
                stale.append(i)
            else:  # the inputs still recorded are the ones it was made from (a wiped input is not a change)
                fresh.append(i)
        states = np.full(len(self.tracks), _IS_MISSING, dtype=np.int8)
        states[np.array(stale, dtype=np.intp)] = _IS_STALE
        states[np.array(fresh, dtype=np.intp)] = _IS_CURRENT
        return states

    def _expected_marks(self, parents: Sequence[str]) -> dict[int, str]:
        """By position, the input marks an output made from the parents' current outputs holds (where every parent has one)."""
        if not parents:
            return {}
        columns = [self.marks(p) for p in parents]
        first, rest = columns[0], columns[1:]
        if not rest:
            return dict(first)
        return {i: joined_marks([m, *(c[i] for c in rest)]) for i, m in first.items() if all(i in c for c in rest)}


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

    Decided a feature (column) at a time, as arrays over groups of tracks that ask for
    the same features: Python touches only the pairs with a recorded output.
    """
    requested = graph.check_names(features)
    forced = set(force)
    tracks = list(tracks)
    states = _States(graph, lineage, tracks)
    groups: list[tuple[frozenset[str], np.ndarray | slice]] = []
    if only is None:
        groups.append((frozenset(requested), slice(None)))
    else:
        codes = [_CODES[s] for s in set(only)]
        asks = np.zeros(len(tracks), dtype=np.int64)  # bit j: the track asks for requested[j]
        for j, name in enumerate(requested):
            asks |= np.isin(states[name], codes).astype(np.int64) << j
        for key in np.unique(asks).tolist():
            targets = frozenset(name for j, name in enumerate(requested) if key >> j & 1)
            groups.append((targets, np.flatnonzero(asks == key)))
    #: Per feature and track: 1 compute, 2 skip (0: not in the plan).
    decisions: dict[str, np.ndarray] = {}
    for targets, positions in groups:
        closure = graph.with_ancestors(targets) if bottom_up else [f for f in requested if f in targets]
        computed: dict[str, np.ndarray] = {}
        for name in closure:
            if name in targets and name in forced:
                needed = np.ones(len(tracks), dtype=bool)[positions]
            else:
                needed = states[name][positions] != _IS_CURRENT
                for parent in graph.stored_inputs(name):
                    if parent in computed:
                        needed |= computed[parent]
            computed[name] = needed
            _row(decisions, name, len(tracks))[positions] = np.where(needed, 1, 2)
        for name in requested:
            if name not in computed:
                _row(decisions, name, len(tracks))[positions] = 2
    page = np.array(tracks, dtype=object)
    compute: dict[str, list[str]] = {}
    skip: dict[str, list[str]] = {}
    with_work = np.zeros(len(tracks), dtype=bool)
    for name in graph.order:
        if (row := decisions.get(name)) is None:
            continue
        if (chosen := row == 1).any():
            compute[name] = page[chosen].tolist()
            with_work |= chosen
        if (reused := row == 2).any():
            skip[name] = page[reused].tolist()
    return Plan(compute, skip, tracks_with_work=int(with_work.sum()))


def _row(decisions: dict[str, np.ndarray], name: str, n: int) -> np.ndarray:
    """The decisions of ``name`` over the page's ``n`` tracks (zeros at first)."""
    if name not in decisions:
        decisions[name] = np.zeros(n, dtype=np.int8)
    return decisions[name]
