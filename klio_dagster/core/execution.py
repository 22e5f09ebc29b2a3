"""Computing the features of one track: the function every executor runs.

``compute_track`` is the one per-track function every executor runs: it
decodes the track's audio at most once per decoding (rate, channels, window),
calls each function once (a multi-output feature's outputs share the call),
computes ephemeral features in memory when a stored one reads them, passes
values computed in the same task from feature to feature in memory, reads
other inputs from the store (only the outputs lineage recorded, checked
against their recorded digest), validates, writes atomically and reports one
:class:`PairResult` per feature. A failure stops only that feature and its
descendants for that track.
"""

from __future__ import annotations

import base64
import copy
import functools
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from klio_dagster.core.audio import Audio, decode_file
from klio_dagster.core.features import Decode, Feature, FeatureOutput, library_versions
from klio_dagster.core.formats import as_frame
from klio_dagster.core.graph import FeatureGraph
from klio_dagster.core.plots import image_mime
from klio_dagster.core.versions import content_digest, digest_of, make_data_version
from klio_dagster.errors import AudioDecodeError, InputMismatchError, MissingInputError
from klio_dagster.storage.registry import SourceRecord, read_source_record
from klio_dagster.storage.sources import DEFAULT_MAX_SOURCE_BYTES, SourcePolicy
from klio_dagster.storage.stores import FeatureStore

#: Longer tracks fail alone (see docs/architecture.md for the memory this bounds).
DEFAULT_MAX_DURATION_S = 3 * 3600.0
#: Distributions whose version every output records (a feature adds its own with ``libraries=``).
RECORDED_LIBRARIES = ("klio-dagster", "numpy", "librosa", "soundfile", "soxr")
#: Metadata every output carries (a feature's own metadata is the rest).
STANDARD_METADATA = frozenset({
    "uri", "code_version", "version", "params", "decode", "libraries", "host", "executor", "pipeline_job",
    "compute_s", "audio_s", "bytes", "source_uri", "sample_rate_hz", "duration_s", "ephemeral_inputs",
    "input_data_versions",
})
#: Largest preview image kept: it is stored, twice, in the event log with every materialisation.
MAX_PREVIEW_BYTES = 200_000


def _checked_preview(preview: bytes | None, metadata: dict[str, Any]) -> str | None:
    """``preview`` as base64 if it is a PNG, JPEG or WebP image within the limit; else why not, in ``metadata``."""
    if not preview:
        return None
    if not isinstance(preview, bytes) or image_mime(preview) is None:
        metadata["preview_omitted"] = "the preview is not PNG, JPEG or WebP bytes"
        return None
    if len(preview) > MAX_PREVIEW_BYTES:
        metadata["preview_omitted"] = f"the preview is {len(preview):,} bytes, over the {MAX_PREVIEW_BYTES:,}-byte limit"
        return None
    return base64.b64encode(preview).decode()


@dataclass(frozen=True)
class TrackLimits:
    """What one track may cost a worker.

    Attributes
    ----------
    max_source_bytes : int
        Largest source file read, in bytes.
    max_duration_s : float
        Longest track decoded, in seconds; a longer track fails alone with :class:`TrackTooLong`.
    source_policy : SourcePolicy, optional
        Allowed roots, checked again when reading a source that an event named.
    """

    max_source_bytes: int = DEFAULT_MAX_SOURCE_BYTES
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    source_policy: SourcePolicy | None = None


@dataclass(frozen=True)
class TrackTask:
    """The features to compute for one track, in topological order.

    ``inputs`` are the recorded data versions of the stored features they
    read, ``(feature, data version)`` pairs from lineage: a stored input is
    read only if lineage recorded it, and only if its bytes are the recorded ones.
    ``source`` is the track's registered source when the tier hands it over
    (the ledger tier); ``None``: it is read from the feature store.
    """

    track_id: str
    features: tuple[str, ...]
    inputs: tuple[tuple[str, str], ...] = ()
    source: SourceRecord | None = None


@dataclass(frozen=True)
class PairResult:
    """The outcome of one (feature, track): an output URI or an error."""

    feature: str
    track_id: str
    uri: str | None = None
    error: str | None = None
    data_version: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    preview_b64: str | None = None
    input_versions: dict[str, str] = field(default_factory=dict)
    #: The feature's schema check: ``True`` passed, ``False`` failed (the output is not stored), ``None`` not run.
    valid: bool | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _TrackInputs:
    """Lazily made inputs of one track: source bytes, decoded audio, stored and ephemeral features, calls."""

    def __init__(self, task: TrackTask, graph: FeatureGraph, store: FeatureStore, limits: TrackLimits):
        self.track_id, self.graph, self.store, self.limits = task.track_id, graph, store, limits
        self.recorded = dict(task.inputs)
        self.source = task.source
        self.source_uri: str | None = None
        self._audio: dict[tuple[Any, ...], Audio] = {}
        self._calls: dict[str, FeatureOutput | Exception] = {}
        self.values: dict[str, Any] = {}
        #: The data version of every stored feature in ``values``: computed here or recorded.
        self.versions: dict[str, str] = {}
        #: Seconds of audio each value (by feature) and each call (by node) was made from, where known.
        self.audio_s: dict[str, float] = {}

    def audio(self, decode: Decode) -> Audio:
        if decode.key not in self._audio:
            record = self.source or read_source_record(self.store, self.track_id)
            if record is None:
                raise AudioDecodeError(f"track {self.track_id!r} has no registered source: run `klio-dagster ingest` for it")
            self.source_uri = record.uri
            policy = self.limits.source_policy if record.from_event else None
            with self.store.open_source(record.uri, max_bytes=self.limits.max_source_bytes, policy=policy) as fh:
                # Block-wise into one float32 array; a track longer than the limit fails here, before any allocation.
                y, sr = decode_file(
                    fh, sr=decode.sample_rate, mono=decode.mono, max_duration_s=self.limits.max_duration_s,
                    name=record.uri, offset_s=decode.offset_s, duration_s=decode.duration_s,
                )
            self._audio[decode.key] = Audio(y, sr)
        return self._audio[decode.key]

    def made_from_seconds(self, feature: Feature) -> float | None:
        """The seconds of audio ``feature``'s call was made from: its decoded window, or its inputs'."""
        return self.audio_s.get(feature.node)

    def value(self, feature: Feature, parent: str) -> Any:
        if parent not in self.values:
            upstream = self.graph[parent]
            if upstream.ephemeral:
                self.values[parent] = self.output(upstream).value
            else:
                value = self.values[parent] = self._read_recorded(feature, parent)
                if isinstance(value, Audio):
                    self.audio_s[parent] = value.duration_s
        return self.values[parent]

    def output(self, feature: Feature) -> FeatureOutput:
        """What ``feature``'s function returned for this track (called once per function and track)."""
        if feature.node not in self._calls:
            try:
                self._calls[feature.node] = _call(feature, self)
            except Exception as exc:  # noqa: BLE001 - kept, so that each output and reader of the call reports it
                self._calls[feature.node] = exc
        result = self._calls[feature.node]
        if isinstance(result, Exception):
            raise result
        if feature.node in self.audio_s:
            self.audio_s.setdefault(feature.name, self.audio_s[feature.node])
        return result if feature.output_name is None else _one_output(feature, result)

    def _read_recorded(self, feature: Feature, parent: str) -> Any:
        """The stored output of ``parent`` that lineage recorded, never whatever sits at its path."""
        upstream, track = self.graph[parent], self.track_id
        how = f"materialize {parent!r} first (`klio-dagster materialize {feature.name}` does it bottom-up)"
        recorded = self.recorded.get(parent)
        if recorded is None:
            raise MissingInputError(f"input {parent!r} of {feature.name!r} has no recorded output for track {track!r}: {how}")
        name = upstream.object_name(track)
        try:
            data = self.store.read_bytes(name)
        except FileNotFoundError:
            raise MissingInputError(
                f"input {parent!r} of {feature.name!r} is recorded for track {track!r} but not in the store ({name}): {how}"
            ) from None
        if content_digest(data) != digest_of(recorded):
            raise InputMismatchError(
                f"the stored {name} is not the output of {parent!r} that lineage recorded for track {track!r} "
                f"(data version {recorded}): it was written outside a recorded run; recompute it with "
                f"`klio-dagster materialize {parent} --tracks {track} --force`"
            )
        self.versions[parent] = recorded
        return upstream.output_format.decode(data)


def _call(feature: Feature, inputs: _TrackInputs) -> FeatureOutput:
    kwargs: dict[str, Any] = {p: inputs.value(feature, p) for p in feature.inputs}
    kwargs.update(copy.deepcopy(dict(feature.params)))  # a function that changes its list parameter changes only its copy
    metadata: dict[str, Any] = {}
    if feature.wants_audio:
        audio = inputs.audio(feature.decode)
        kwargs["audio"] = audio
        metadata.update(sample_rate_hz=audio.sample_rate, duration_s=round(audio.duration_s, 3))
    if feature.wants_track_id:
        kwargs["track_id"] = inputs.track_id
    seconds = [inputs.audio_s[p] for p in feature.inputs if p in inputs.audio_s]
    if feature.wants_audio:
        seconds.append(kwargs["audio"].duration_s)
    if seconds:
        inputs.audio_s[feature.node] = max(seconds)
    out = feature.fn(**kwargs)
    if isinstance(out, FeatureOutput):
        return FeatureOutput(out.value, {**metadata, **out.metadata}, out.preview)
    return FeatureOutput(out, metadata)


def _one_output(feature: Feature, call: FeatureOutput) -> FeatureOutput:
    """One output of a multi-output feature's call: its value, with the call's metadata under its own."""
    returned = call.value
    if not isinstance(returned, Mapping):
        raise TypeError(
            f"multi-output feature {feature.node!r} must return a mapping of its outputs, got {type(returned).__name__}"
        )
    if feature.output_name not in returned:
        raise ValueError(
            f"multi-output feature {feature.node!r} returned no {feature.output_name!r} "
            f"(it returned {sorted(map(str, returned))})"
        )
    out = returned[feature.output_name]
    if isinstance(out, FeatureOutput):
        return FeatureOutput(out.value, {**call.metadata, **out.metadata}, out.preview)
    return FeatureOutput(out, dict(call.metadata))


@functools.lru_cache(maxsize=64)
def _library_versions(names: tuple[str, ...]) -> dict[str, str]:
    return library_versions(names)


def provenance(feature: Feature) -> dict[str, Any]:
    """What made ``feature``'s outputs, besides its inputs: recorded with every output."""
    record: dict[str, Any] = {"code_version": feature.code_version, "version": feature.version}
    if feature.params:
        record["params"] = dict(feature.params)
    if feature.wants_audio and feature.decode.describe():
        record["decode"] = feature.decode.describe()
    record["libraries"] = dict(_library_versions(tuple(sorted({*RECORDED_LIBRARIES, *feature.libraries}))))
    record["host"] = socket.gethostname()
    return record


def compute_track(
    task: TrackTask, graph: FeatureGraph, store: FeatureStore, limits: TrackLimits | None = None
) -> list[PairResult]:
    """Compute ``task.features`` for one track within ``limits``; one result per feature, in order."""
    inputs = _TrackInputs(task, graph, store, limits or TrackLimits())
    results: list[PairResult] = []
    failed: set[str] = set()
    for name in task.features:
        feature = graph[name]
        start = time.perf_counter()
        valid: bool | None = None
        try:
            broken = [p for p in (*feature.inputs, *graph.stored_inputs(name)) if p in failed]
            if broken:
                raise MissingInputError(f"input {broken[0]!r} failed for this track")
            output = inputs.output(feature)
            value, metadata = output.value, dict(output.metadata)
            if isinstance(value, Audio):
                metadata.update(sample_rate_hz=value.sample_rate, duration_s=round(value.duration_s, 3))
            if feature.schema is not None:
                valid = False
                feature.schema.validate(as_frame(value))
                valid = True
            data = feature.output_format.encode(value)
            uri = store.write_bytes(feature.object_name(task.track_id), data)
        except Exception as exc:  # noqa: BLE001 - isolation: any failure is recorded for this pair only
            failed.add(name)
            results.append(PairResult(name, task.track_id, error=f"{type(exc).__name__}: {exc}"[:2000], valid=valid))
            continue
        read_from = {p: inputs.versions[p] for p in graph.stored_inputs(name)}
        data_version = make_data_version(feature.version, content_digest(data), read_from)
        inputs.values[name], inputs.versions[name] = value, data_version
        metadata.update(provenance(feature))
        metadata.update(uri=uri, compute_s=round(time.perf_counter() - start, 4), bytes=len(data))
        ephemeral = {p: graph[p].version for p in graph.ephemeral_ancestors(name)}
        if ephemeral:
            metadata["ephemeral_inputs"] = ephemeral
        if inputs.made_from_seconds(feature) is not None:
            metadata["audio_s"] = round(inputs.made_from_seconds(feature), 3)
        if inputs.source_uri:
            metadata["source_uri"] = inputs.source_uri
        preview = _checked_preview(output.preview, metadata)
        results.append(PairResult(name, task.track_id, uri, None, data_version, metadata, preview, read_from, valid))
    return results
