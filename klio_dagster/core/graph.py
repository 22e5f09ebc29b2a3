"""The graph of features: topological order, versions folded over ancestors, what reads what.

A :class:`FeatureGraph` takes ``@feature`` and ``@multi_feature`` functions
(:mod:`klio_dagster.core.features`), checks that every input names a feature,
orders them, and gives each its *version*: its own fingerprint (code version,
parameters, decode settings, library versions) folded with the versions of
the features it reads. Ephemeral features are resolved through: a stored
feature's inputs are the stored features it is made from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from klio_dagster.core.features import AUDIO, Feature, MultiFeature
from klio_dagster.errors import FeatureGraphError


def _flatten(items: Iterable[Feature | MultiFeature]) -> list[Feature]:
    flat: list[Feature] = []
    for item in items:
        if isinstance(item, MultiFeature):
            flat.extend(item.outputs)
        elif isinstance(item, Feature):
            flat.append(item)
        else:
            raise FeatureGraphError(f"a FeatureGraph takes @feature and @multi_feature functions, not {type(item).__name__}")
    return flat


def _fold(fingerprint: Mapping[str, Any], parents: Mapping[str, str]) -> str:
    """``code_version`` alone when nothing else counts, else ``code_version+hash`` of all of it."""
    own = {k: v for k, v in fingerprint.items() if v and k != "code_version"}
    if not own and not parents:
        return fingerprint["code_version"]
    blob = json.dumps({"own": own, "parents": dict(parents)}, sort_keys=True, default=str)
    return f"{fingerprint['code_version']}+{hashlib.sha1(blob.encode()).hexdigest()[:8]}"


class FeatureGraph:
    """A set of features with their dependencies, in topological order.

    ``external`` features belong to another graph (another team's code
    location): this graph's features may read their stored values, and
    their materialisations make this graph's features stale, but they are
    never computed here. Pass them as that graph holds them
    (``other_graph["name"]``), so their versions, which fold in their own
    ancestors', are the ones that graph records.

    Iterating a graph gives its stored features (its assets); ephemeral
    features are reached by name and through :meth:`stored_inputs`.
    """

    def __init__(self, features: Sequence[Feature | MultiFeature], *, external: Sequence[Feature | MultiFeature] = ()):
        by_name: dict[str, Feature] = {}
        for f in _flatten(features):
            if f.name in by_name:
                raise FeatureGraphError(f"feature name {f.name!r} is used twice")
            by_name[f.name] = f
        externals = {f.name: f for f in _flatten(external) if f.name not in by_name}
        for f in by_name.values():
            unknown = [i for i in f.inputs if i not in by_name and i not in externals]
            if unknown:
                raise FeatureGraphError(
                    f"feature {f.name!r} reads {unknown}, which are not features of this graph: add them "
                    "(or pass another team's features as `external`), declare them in `params`, or rename the parameter"
                )
            if f.ephemeral and f.deps:
                raise FeatureGraphError(f"ephemeral feature {f.name!r} cannot depend on plain assets: it is not an asset")
        self._all = by_name
        self.order: tuple[str, ...] = tuple(self._toposort())
        self._external = {n: self._resolved_external(f) for n, f in externals.items()}
        for name in self.order:
            f = self._all[name]
            self._all[name] = replace(f, version=_fold(f.own_fingerprint(), {p: self[p].version for p in f.inputs}))
        self._stored_inputs: dict[str, tuple[tuple[str, ...], bool]] = {}
        for name in self.order:  # parents first: an ephemeral parent's own stored inputs are known by then
            self._stored_inputs[name] = self._through_ephemerals(name)

    def _resolved_external(self, f: Feature) -> Feature:
        if f.version:
            return f
        if f.inputs:
            raise FeatureGraphError(
                f"external feature {f.name!r} reads {list(f.inputs)}: pass it as its own graph holds it "
                f"(`their_graph[{f.name!r}]`), so that its version is the one its location records"
            )
        return replace(f, version=_fold(f.own_fingerprint(), {}))

    def _toposort(self) -> list[str]:
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "visiting":
                raise FeatureGraphError(f"features form a cycle: {' -> '.join(path + (name,))}")
            state[name] = "visiting"
            for parent in self._all[name].inputs:
                if parent in self._all:
                    visit(parent, path + (name,))
            state[name] = "done"
            order.append(name)

        for name in self._all:
            visit(name, ())
        return order

    def _through_ephemerals(self, name: str) -> tuple[tuple[str, ...], bool]:
        """The stored features ``name`` reads, directly or through ephemeral ones, and whether it reaches ``audio``."""
        stored: list[str] = []
        f = self._all[name]
        reaches_audio = f.wants_audio
        for parent in f.inputs:
            if parent in self._all and self._all[parent].ephemeral:
                parents, audio = self._stored_inputs[parent]
                stored.extend(parents)
                reaches_audio |= audio
            else:
                stored.append(parent)
        return tuple(sorted(set(stored))), reaches_audio

    def __getitem__(self, name: str) -> Feature:
        if name in self._all:
            return self._all[name]
        if name in self._external:
            return self._external[name]
        raise KeyError(f"no feature {name!r} in this graph: its features are {list(self.order)}")

    def __iter__(self) -> Iterator[Feature]:
        return (self._all[n] for n in self.order if not self._all[n].ephemeral)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def names(self) -> tuple[str, ...]:
        """The stored features (the assets), in topological order."""
        return tuple(n for n in self.order if not self._all[n].ephemeral)

    @property
    def all_features(self) -> tuple[Feature, ...]:
        """Every feature of the graph, ephemeral ones too, in topological order (iterating gives the stored ones).

        What a variant of the graph is built from: ``FeatureGraph([... for f in graph.all_features])``.
        """
        return tuple(self._all[n] for n in self.order)

    @property
    def ephemeral_names(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if self._all[n].ephemeral)

    @property
    def external_names(self) -> tuple[str, ...]:
        """Features of other graphs that this graph reads."""
        return tuple(self._external)

    def stored_inputs(self, name: str) -> tuple[str, ...]:
        """The stored features ``name`` is made from, directly or through ephemeral features, sorted."""
        return self._stored_inputs[name][0]

    def ephemeral_ancestors(self, name: str) -> tuple[str, ...]:
        """The ephemeral features computed in memory to make ``name``, in topological order."""
        found: set[str] = set()
        stack = [p for p in self._all[name].inputs if p in self._all and self._all[p].ephemeral]
        while stack:
            parent = stack.pop()
            if parent not in found:
                found.add(parent)
                stack.extend(p for p in self._all[parent].inputs if p in self._all and self._all[p].ephemeral)
        return tuple(n for n in self.order if n in found)

    def window_s(self, name: str) -> float | None:
        """The longest window, in seconds, of the audio ``name`` is made from, if every decoding above it has one.

        ``None``: whole tracks (or no audio at all). Cost estimates scale with it.
        """
        seen, stack, decodes = set(), [name], []
        while stack:
            current = stack.pop()
            if current in seen or (current not in self._all and current not in self._external):
                continue
            seen.add(current)
            f = self[current]
            if f.wants_audio:
                decodes.append(f.decode.duration_s)
            stack.extend(f.inputs)
        return max(decodes) if decodes and None not in decodes else None

    def reads_audio(self, name: str) -> bool:
        """Whether ``name`` reads the track's audio, directly or through ephemeral features."""
        return self._stored_inputs[name][1]

    def upstream(self, name: str) -> tuple[str, ...]:
        """The assets ``name`` is made from: ``audio`` if it reads it, and its stored inputs."""
        return ((AUDIO,) if self.reads_audio(name) else ()) + self.stored_inputs(name)

    def siblings(self, name: str) -> tuple[str, ...]:
        """The outputs made by the same function call as ``name`` (``name`` included)."""
        node = self._all[name].node
        return tuple(n for n in self.order if self._all[n].node == node)

    def extended(self, features: Sequence[Feature | MultiFeature], *, external: Sequence[Feature | MultiFeature] = ()) -> FeatureGraph:
        """A new graph with every feature of this one (ephemeral ones too) and ``features``: a graph to build on."""
        return FeatureGraph([*self.all_features, *features], external=[*self._external.values(), *external])

    def check_names(self, names: Iterable[str]) -> list[str]:
        """``names`` in topological order; :class:`~klio_dagster.errors.FeatureGraphError` on unknown or ephemeral ones."""
        wanted = set(names)
        ephemeral = sorted(wanted & set(self.ephemeral_names))
        if ephemeral:
            readers = sorted(n for n in self.names if set(ephemeral) & set(self.ephemeral_ancestors(n)))  # stored ones
            raise FeatureGraphError(
                f"{ephemeral} are ephemeral: they are computed in memory for the features that read them "
                f"({readers}) and never stored; materialize those instead"
            )
        unknown = sorted(wanted - set(self._all))
        if unknown:
            raise FeatureGraphError(f"unknown feature(s) {unknown}: known features are {list(self.names)}")
        return [n for n in self.order if n in wanted]

    def with_ancestors(self, names: Iterable[str]) -> list[str]:
        """``names`` and every stored feature they are made from, transitively, in topological order."""
        closure: set[str] = set()
        stack = list(self.check_names(names))
        while stack:
            name = stack.pop()
            if name not in closure and name in self._all:
                closure.add(name)
                stack.extend(self.stored_inputs(name))
        return [n for n in self.order if n in closure]

    def descendants(self, names: Iterable[str]) -> list[str]:
        """Stored features made, transitively, from any of ``names`` (``"audio"`` allowed)."""
        found = set(names)
        for name in self.names:
            if found & set(self.upstream(name)):
                found.add(name)
        return [n for n in self.names if n in found and n not in set(names)]
