"""The ``@feature`` and ``@multi_feature`` decorators: per-track functions and how they are stored.

A feature is a plain per-track Python function. Its parameters name its
inputs: ``audio`` receives the track's decoded audio as the feature declares
it (sample rate, channels, window), ``track_id`` receives the track ID, a
name declared in ``params`` receives that parameter's value, and any other
parameter receives the value of the upstream feature of that name.

A feature's *version* is its ``code_version`` folded with everything else
that decides its output: its parameters, its decode settings, the library
versions it asks to be versioned by, and the versions of every feature it
reads, transitively (folded by :class:`~klio_dagster.core.graph.FeatureGraph`).
Changing any of them changes the version of that feature and of all its
descendants, so all of them become stale, in the Dagster UI too (the version
is the asset's code version).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import keyword
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
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
#: Where an output is stored, relative to the store's root.
DEFAULT_PATH = "{feature}/{track}.{ext}"
_PATH_FIELDS = frozenset({"feature", "track", "ext", "shard"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class FeatureOutput:
    """A feature value with what to record on its materialisation.

    ``metadata`` values must be JSON-serialisable (they travel back from Beam
    workers); ``preview`` is an image (PNG, JPEG or WebP bytes, tens of KB: it is
    kept in the event log) shown with the materialisation in the Dagster UI, for
    example :func:`klio_dagster.core.plots.figure_image` of a figure.
    """

    value: Any
    metadata: Mapping[str, Any] = field(default_factory=dict)
    preview: bytes | None = None


@dataclass(frozen=True)
class Decode:
    """How a feature's ``audio`` parameter is decoded from the track's source.

    Attributes
    ----------
    sample_rate : int, optional
        Rate in Hz the audio is resampled to (soxr, high quality); ``None`` keeps the file's rate.
    mono : bool
        Average the channels into one; ``False`` keeps the file's channels, ``(channels, n)``.
    offset_s : float >= 0
        Start of the decoded window, in seconds.
    duration_s : float > 0, optional
        Length of the decoded window, in seconds; ``None``: to the end of the track.
    """

    sample_rate: int | None = None
    mono: bool = True
    offset_s: float = 0.0
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.sample_rate is not None and (not isinstance(self.sample_rate, int) or self.sample_rate <= 0):
            raise FeatureGraphError(f"sample_rate must be a positive number of Hz or None, not {self.sample_rate!r}")
        if not isinstance(self.offset_s, (int, float)) or self.offset_s < 0:
            raise FeatureGraphError(f"offset_s must be a number of seconds >= 0, not {self.offset_s!r}")
        if self.duration_s is not None and (not isinstance(self.duration_s, (int, float)) or self.duration_s <= 0):
            raise FeatureGraphError(f"duration_s must be a number of seconds > 0 or None, not {self.duration_s!r}")

    @property
    def key(self) -> tuple[int | None, bool, float, float | None]:
        """What distinguishes one decoding from another (a track is decoded once per key and task)."""
        return (self.sample_rate, self.mono, float(self.offset_s), None if self.duration_s is None else float(self.duration_s))

    def describe(self) -> dict[str, Any]:
        """The non-default settings, as recorded in the version and the metadata."""
        return {k: v for k, v in zip(("sample_rate", "mono", "offset_s", "duration_s"), self.key) if v != _DEFAULT_DECODE_KEY[k]}


_DEFAULT_DECODE_KEY = dict(zip(("sample_rate", "mono", "offset_s", "duration_s"), (None, True, 0.0, None)))
_DECODE_FIELDS = frozenset(_DEFAULT_DECODE_KEY)


@dataclass(frozen=True, eq=False)
class Feature:
    """One per-track feature (or one output of a multi-output feature).

    ``version`` is set when a :class:`FeatureGraph` takes the feature in: see the module docstring.
    ``computation`` names the function's node when several outputs share it
    (:func:`multi_feature`); ``output_name`` is this output's key in what it returns.
    """

    name: str
    fn: Callable[..., Any]
    code_version: str
    output_format: OutputFormat
    inputs: tuple[str, ...]
    wants_audio: bool
    wants_track_id: bool
    decode: Decode = Decode()
    schema: pa.DataFrameSchema | None = None
    deps: tuple[str | AssetKey, ...] = ()
    description: str | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    libraries: tuple[str, ...] = ()
    ephemeral: bool = False
    path: str = DEFAULT_PATH
    computation: str | None = None
    output_name: str | None = None
    version: str = ""

    @property
    def asset_key(self) -> AssetKey:
        from dagster import AssetKey

        return AssetKey(self.name)

    @property
    def extension(self) -> str:
        return self.output_format.extension

    @property
    def sample_rate(self) -> int | None:
        return self.decode.sample_rate

    @property
    def mono(self) -> bool:
        return self.decode.mono

    @property
    def node(self) -> str:
        """The name of the function call that makes this output (shared by a multi-output feature's outputs)."""
        return self.computation or self.name

    def object_name(self, track_id: str) -> str:
        """Where the output for ``track_id`` is stored, relative to the store's root (see ``path``)."""
        shard = hashlib.sha1(track_id.encode()).hexdigest()[:2]
        return self.path.format(feature=self.name, track=track_id, ext=self.extension, shard=shard)

    def with_params(self, **changes: Any) -> Feature:
        """This feature with some parameters (or decode settings: ``sample_rate``, ``offset_s``, ...) changed.

        A new version follows, so outputs made with the old values become stale.
        """
        unknown = sorted(set(changes) - set(self.params) - _DECODE_FIELDS)
        if unknown:
            raise FeatureGraphError(
                f"feature {self.name!r} has no parameter {unknown}: its parameters are {sorted(self.params)}, "
                f"its decode settings {sorted(_DECODE_FIELDS)}"
            )
        decode = replace(self.decode, **{k: v for k, v in changes.items() if k in _DECODE_FIELDS and k not in self.params})
        params = {**self.params, **{k: v for k, v in changes.items() if k in self.params}}
        return replace(self, params=_frozen_params(self.name, params), decode=decode, version="")

    def own_fingerprint(self) -> dict[str, Any]:
        """What, besides its inputs, decides this output: folded into ``version``."""
        return {
            "code_version": self.code_version,
            "params": dict(self.params),
            "decode": self.decode.describe() if self.wants_audio else {},
            "libraries": library_versions(self.libraries),
        }


@dataclass(frozen=True)
class FeatureOut:
    """One output of a :func:`multi_feature`: its own format, schema, code version and storage."""

    output: str | OutputFormat = "npy"
    schema: pa.DataFrameSchema | None = None
    code_version: str | None = None
    description: str | None = None
    ephemeral: bool = False
    path: str = DEFAULT_PATH


@dataclass(frozen=True, eq=False)
class MultiFeature:
    """A function whose outputs are several features (Klio's ``TaggedOutput``); a graph takes its outputs in."""

    name: str
    outputs: tuple[Feature, ...]

    def __getitem__(self, output: str) -> Feature:
        for f in self.outputs:
            if f.output_name == output:
                return f
        raise KeyError(f"{self.name!r} has no output {output!r}: its outputs are {[f.output_name for f in self.outputs]}")

    def with_params(self, **changes: Any) -> MultiFeature:
        """All outputs with some parameters (or decode settings) changed."""
        return MultiFeature(self.name, tuple(f.with_params(**changes) for f in self.outputs))


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """The installed version of each distribution in ``names`` (``"not installed"`` for a missing one)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in sorted(set(names)):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _frozen_params(owner: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
    try:
        json.dumps(dict(params), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise FeatureGraphError(
            f"parameters of {owner!r} must be JSON values (numbers, strings, booleans, lists, dicts): {exc}"
        ) from None
    return MappingProxyType(dict(params))


def _check_path(owner: str, path: str) -> str:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(path) if f is not None}
    except ValueError as exc:
        raise FeatureGraphError(f"output path {path!r} of {owner!r} is not a valid template: {exc}") from None
    if "track" not in fields or fields - _PATH_FIELDS:
        raise FeatureGraphError(
            f"output path {path!r} of {owner!r} must contain {{track}} and may use only "
            f"{sorted('{' + f + '}' for f in _PATH_FIELDS)}"
        )
    if path.startswith("/") or ".." in path.split("/") or "\\" in path:
        raise FeatureGraphError(f"output path {path!r} of {owner!r} must be relative to the store, with no '..'")
    return path


def _signature(owner: str, fn: Callable[..., Any], params: Mapping[str, Any]) -> tuple[tuple[str, ...], bool, bool]:
    names = list(inspect.signature(fn).parameters)
    undeclared = sorted(set(params) - set(names))
    if undeclared:
        raise FeatureGraphError(f"{owner!r} declares parameters {undeclared} that the function does not take")
    reserved = sorted(set(params) & RESERVED_PARAMETERS)
    if reserved:
        raise FeatureGraphError(f"{owner!r}: {reserved} cannot be parameters, they are reserved inputs")
    inputs = tuple(p for p in names if p not in RESERVED_PARAMETERS and p not in params)
    return inputs, AUDIO in names, "track_id" in names


def _check_name(name: str) -> str:
    if not _NAME.match(name) or keyword.iskeyword(name) or name in RESERVED_PARAMETERS:
        raise FeatureGraphError(f"feature name {name!r} must be a Python identifier other than {sorted(RESERVED_PARAMETERS)}")
    return name


def feature(
    *,
    code_version: str,
    output: str | OutputFormat = "npy",
    schema: pa.DataFrameSchema | None = None,
    sample_rate: int | None = None,
    mono: bool = True,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    params: Mapping[str, Any] | None = None,
    libraries: Iterable[str] = (),
    ephemeral: bool = False,
    path: str = DEFAULT_PATH,
    deps: Iterable[str | AssetKey] = (),
    name: str | None = None,
) -> Callable[[Callable[..., Any]], Feature]:
    """Make a per-track function a feature.

    Parameters
    ----------
    code_version : str
        Bump it when the function's output changes: the feature and its descendants become stale.
    output : str or OutputFormat
        How the returned value is stored: a built-in format's name (``"npy"``,
        ``"parquet"``, ``"json"``, ``"png"``, ``"audio"``; see
        :mod:`klio_dagster.core.formats`) or your own :class:`OutputFormat`.
    schema : pandera.DataFrameSchema, optional
        Validates the tabular view of the value (see ``formats.as_frame``)
        before anything is written.
    sample_rate : int, optional
        Sample rate in Hz at which ``audio`` is decoded; ``None`` keeps the file's rate.
    mono : bool
        Mix ``audio`` down to one channel; ``False`` gives ``(channels, n)`` samples.
    offset_s, duration_s : float
        The window of the track ``audio`` holds, in seconds (``duration_s=None``: to the end).
    params : mapping, optional
        Named values (JSON: numbers, strings, lists, ...) passed to the
        function's parameters of those names; part of the version.
    libraries : iterable of str
        Distributions (``"librosa"``) whose installed version is part of the version.
    ephemeral : bool
        Computed in memory when a stored feature of the same run reads it; never
        stored and not an asset.
    path : str
        Where outputs are stored in the feature store: a template of
        ``{feature}``, ``{track}``, ``{ext}`` and ``{shard}`` (two hex digits of
        a hash of the track ID, to spread a catalogue over folders).
    deps : iterable of str or AssetKey
        Plain Dagster assets this feature depends on without receiving their value.
    name : str, optional
        Asset name; defaults to the function's name.
    """

    output_format = get_format(output)
    decode = Decode(sample_rate, mono, offset_s, duration_s)

    def decorate(fn: Callable[..., Any]) -> Feature:
        own_name = _check_name(name or fn.__name__)
        inputs, wants_audio, wants_track_id = _signature(own_name, fn, params or {})
        return Feature(
            name=own_name,
            fn=fn,
            code_version=str(code_version),
            output_format=output_format,
            inputs=inputs,
            wants_audio=wants_audio,
            wants_track_id=wants_track_id,
            decode=decode,
            schema=schema,
            deps=tuple(deps),
            description=inspect.getdoc(fn),
            params=_frozen_params(own_name, params or {}),
            libraries=tuple(libraries),
            ephemeral=ephemeral,
            path=_check_path(own_name, path),
        )

    return decorate


def multi_feature(
    *,
    outs: Mapping[str, FeatureOut],
    code_version: str,
    sample_rate: int | None = None,
    mono: bool = True,
    offset_s: float = 0.0,
    duration_s: float | None = None,
    params: Mapping[str, Any] | None = None,
    libraries: Iterable[str] = (),
    deps: Iterable[str | AssetKey] = (),
    name: str | None = None,
) -> Callable[[Callable[..., Any]], MultiFeature]:
    """Make a per-track function that returns several values several features.

    The function returns a mapping with one entry per name in ``outs`` (each
    value, or a :class:`FeatureOutput`). Each output is a feature of its own:
    its own asset, format, schema, storage and version (an out's
    ``code_version`` defaults to this one). The function runs once per track
    whichever of its outputs a run needs, and only the outputs that are
    missing, stale or forced are written. The other arguments are
    :func:`feature`'s, shared by every output.
    """
    if not outs:
        raise FeatureGraphError("multi_feature needs at least one output in `outs`")
    decode = Decode(sample_rate, mono, offset_s, duration_s)

    def decorate(fn: Callable[..., Any]) -> MultiFeature:
        node = _check_name(name or fn.__name__)
        inputs, wants_audio, wants_track_id = _signature(node, fn, params or {})
        frozen = _frozen_params(node, params or {})
        features = tuple(
            Feature(
                name=_check_name(out_name),
                fn=fn,
                code_version=str(out.code_version or code_version),
                output_format=get_format(out.output),
                inputs=inputs,
                wants_audio=wants_audio,
                wants_track_id=wants_track_id,
                decode=decode,
                schema=out.schema,
                deps=tuple(deps),
                description=out.description or inspect.getdoc(fn),
                params=frozen,
                libraries=tuple(libraries),
                ephemeral=out.ephemeral,
                path=_check_path(out_name, out.path),
                computation=node,
                output_name=out_name,
            )
            for out_name, out in outs.items()
        )
        return MultiFeature(node, features)

    return decorate
