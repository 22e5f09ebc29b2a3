"""The ``@feature`` decorator and the graph of features it builds.

A feature is a plain per-track Python function. Its parameters name its
inputs: ``audio`` receives the track's decoded audio at the feature's
declared sample rate, ``track_id`` receives the track ID, and any other
parameter receives the stored value of the upstream feature of that name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from klio_dagster.core.formats import OutputFormat, get_format
from klio_dagster.errors import FeatureGraphError

if TYPE_CHECKING:  # Beam workers import features without Dagster
    import pandera.pandas as pa
    from dagster import AssetKey

#: Name of the source asset: the registered file of each track.
AUDIO = "audio"
#: Parameter names with a meaning of their own.
RESERVED_PARAMETERS = frozenset({AUDIO, "track_id"})


@dataclass(frozen=True)
class FeatureOutput:
    """A feature value with what to record on its materialisation.

    ``metadata`` values must be JSON-serialisable (they travel back from Beam
    workers); ``preview`` is an image (PNG, JPEG or WebP bytes, tens of KB: it is
    kept in the event log) shown with the materialisation in the Dagster UI, for
    example :func:`klio_dagster.core.plots.mel_spectrogram_image`.
    """

    value: Any
    metadata: Mapping[str, Any] = field(default_factory=dict)
    preview: bytes | None = None


@dataclass(frozen=True, eq=False)
class Feature:
    """One per-track feature: a function, its inputs and how its output is stored."""

    name: str
    fn: Callable[..., Any]
    code_version: str
    output_format: OutputFormat
    inputs: tuple[str, ...]
    wants_audio: bool
    wants_track_id: bool
    sample_rate: int | None = None
    mono: bool = True
    schema: pa.DataFrameSchema | None = None
    deps: tuple[str | AssetKey, ...] = ()
    description: str | None = None

    @property
    def asset_key(self) -> AssetKey:
        from dagster import AssetKey

        return AssetKey(self.name)

    @property
    def extension(self) -> str:
        return self.output_format.extension

    def upstream(self) -> tuple[str, ...]:
        """Names of the assets this feature reads, the source ``audio`` included."""
        return ((AUDIO,) if self.wants_audio else ()) + self.inputs


def feature(
    *,
    code_version: str,
    output: str = "npy",
    schema: pa.DataFrameSchema | None = None,
    sample_rate: int | None = None,
    mono: bool = True,
    deps: Iterable[str | AssetKey] = (),
    name: str | None = None,
) -> Callable[[Callable[..., Any]], Feature]:
    """Make a per-track function a feature.

    Parameters
    ----------
    code_version : str
        Bump it when the function's output changes; existing outputs become stale.
    output : {"npy", "parquet", "json", "png"}
        How the returned value is stored.
    schema : pandera.DataFrameSchema, optional
        Validates the tabular view of the value (see ``formats.as_frame``)
        before anything is written.
    sample_rate : int, optional
        Sample rate in Hz at which ``audio`` is decoded; ``None`` keeps the file's rate.
    mono : bool
        Mix ``audio`` down to one channel.
    deps : iterable of str or AssetKey
        Plain Dagster assets this feature depends on without receiving their value.
    name : str, optional
        Asset name; defaults to the function's name.
    """

    output_format = get_format(output)

    def decorate(fn: Callable[..., Any]) -> Feature:
        params = list(inspect.signature(fn).parameters)
        return Feature(
            name=name or fn.__name__,
            fn=fn,
            code_version=code_version,
            output_format=output_format,
            inputs=tuple(p for p in params if p not in RESERVED_PARAMETERS),
            wants_audio=AUDIO in params,
            wants_track_id="track_id" in params,
            sample_rate=sample_rate,
            mono=mono,
            schema=schema,
            deps=tuple(deps),
            description=inspect.getdoc(fn),
        )

    return decorate


class FeatureGraph:
    """A set of features with their dependencies, in topological order.

    ``external`` features belong to another graph (another team's code
    location): this graph's features may read their stored values, and
    their materialisations make this graph's features stale, but they are
    never computed here.
    """

    def __init__(self, features: Sequence[Feature], *, external: Sequence[Feature] = ()):
        by_name: dict[str, Feature] = {}
        for f in features:
            if f.name in by_name or f.name == AUDIO:
                raise FeatureGraphError(f"feature name {f.name!r} is used twice (or is the reserved 'audio')")
            by_name[f.name] = f
        self._external = {f.name: f for f in external if f.name not in by_name}
        for f in features:
            unknown = [i for i in f.inputs if i not in by_name and i not in self._external]
            if unknown:
                raise FeatureGraphError(
                    f"feature {f.name!r} reads {unknown}, which are not features of this graph: "
                    "add them (or pass another team's features as `external`), or rename the parameter"
                )
        self._features = by_name
        self.order: tuple[str, ...] = tuple(self._toposort())

    def _toposort(self) -> list[str]:
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, path: tuple[str, ...]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "visiting":
                raise FeatureGraphError(f"features form a cycle: {' -> '.join(path + (name,))}")
            state[name] = "visiting"
            for parent in self._features[name].inputs:
                if parent in self._features:
                    visit(parent, path + (name,))
            state[name] = "done"
            order.append(name)

        for name in self._features:
            visit(name, ())
        return order

    def __getitem__(self, name: str) -> Feature:
        return self._features[name] if name in self._features else self._external[name]

    def __iter__(self):
        return (self._features[n] for n in self.order)

    def __len__(self) -> int:
        return len(self._features)

    @property
    def names(self) -> tuple[str, ...]:
        return self.order

    @property
    def external_names(self) -> tuple[str, ...]:
        """Features of other graphs that this graph reads."""
        return tuple(self._external)

    def check_names(self, names: Iterable[str]) -> list[str]:
        """Return ``names`` in topological order; raise :class:`~klio_dagster.errors.FeatureGraphError` on unknown ones."""
        wanted = set(names)
        unknown = sorted(wanted - set(self._features))
        if unknown:
            raise FeatureGraphError(f"unknown feature(s) {unknown}: known features are {list(self.order)}")
        return [n for n in self.order if n in wanted]

    def with_ancestors(self, names: Iterable[str]) -> list[str]:
        """``names`` and every feature they read from, transitively, in topological order."""
        closure: set[str] = set()
        stack = list(self.check_names(names))
        while stack:
            name = stack.pop()
            if name not in closure and name in self._features:
                closure.add(name)
                stack.extend(self._features[name].inputs)
        return [n for n in self.order if n in closure]

    def descendants(self, names: Iterable[str]) -> list[str]:
        """Features that read, transitively, from any of ``names`` (``"audio"`` allowed)."""
        found = set(names)
        for name in self.order:
            if found & set(self._features[name].upstream()):
                found.add(name)
        return [n for n in self.order if n in found and n not in set(names)]
