"""Output formats: how a feature's value becomes bytes in the store and back.

Each format also gives the tabular view of a value that a pandera schema
validates, so every feature can carry a schema whatever its output type.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from klio_dagster.core.audio import Audio, encode_float_wav
from klio_dagster.errors import UnknownFormat


@dataclass(frozen=True)
class OutputFormat:
    """A named serialisation with a file extension."""

    name: str
    extension: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def _encode_parquet(value: pd.DataFrame) -> bytes:
    if not isinstance(value, pd.DataFrame):
        raise TypeError(f"parquet output needs a pandas DataFrame, got {type(value).__name__}")
    buf = io.BytesIO()
    value.to_parquet(buf, index=False)
    return buf.getvalue()


def _encode_npy(value: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(value), allow_pickle=False)
    return buf.getvalue()


def _encode_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, allow_nan=False).encode()


def _encode_audio(value: Audio) -> bytes:
    """32-bit float WAV: the samples bit for bit, with their sample rate and channels in the header."""
    if not isinstance(value, Audio):
        raise TypeError(f"audio output needs an Audio(samples, sample_rate), got {type(value).__name__}")
    return encode_float_wav(value.samples, value.sample_rate)


def _decode_audio(data: bytes) -> Audio:
    import soundfile as sf

    samples, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return Audio(samples[:, 0] if samples.shape[1] == 1 else np.ascontiguousarray(samples.T), int(sample_rate))


def _encode_png(value: np.ndarray | bytes) -> bytes:
    """A 2-D array becomes a colour-mapped image (row 0 at the bottom); bytes pass through."""
    if isinstance(value, bytes):
        return value
    return render_png(np.asarray(value))


def render_png(image: np.ndarray, max_width: int | None = None) -> bytes:
    """A 2-D array as a magma colour-mapped PNG, row 0 at the bottom.

    ``max_width`` (pixels) averages columns in blocks so that the image is at
    most that wide: a thumbnail for previews.
    """
    from matplotlib.image import imsave

    if max_width and image.shape[1] > max_width:
        step = -(-image.shape[1] // max_width)
        usable = image.shape[1] // step * step
        image = image[:, :usable].reshape(image.shape[0], -1, step).mean(axis=2)
    buf = io.BytesIO()
    imsave(buf, image, cmap="magma", origin="lower", format="png")
    return buf.getvalue()


FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat("parquet", "parquet", _encode_parquet, lambda b: pd.read_parquet(io.BytesIO(b))),
        OutputFormat("npy", "npy", _encode_npy, lambda b: np.load(io.BytesIO(b), allow_pickle=False)),
        OutputFormat("json", "json", _encode_json, lambda b: json.loads(b)),
        OutputFormat("png", "png", _encode_png, lambda b: b),
        OutputFormat("audio", "wav", _encode_audio, _decode_audio),
    )
}


def get_format(name: str) -> OutputFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise UnknownFormat(f"unknown output format {name!r}: choose one of {sorted(FORMATS)}") from None


def as_frame(value: Any) -> pd.DataFrame:
    """The table a pandera schema validates for ``value``.

    DataFrames are themselves; a mapping is one row; :class:`Audio` is its
    samples (mono: a ``value`` column; channels: a column each); a 1-D array is a
    ``value`` column; a 2-D array has one row per column of the array
    (one per frame for spectrogram-like ``(bins, frames)`` arrays), with
    columns named ``"0"``, ``"1"``, ...
    """
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, dict):
        return pd.DataFrame([value])
    if isinstance(value, Audio):
        value = value.samples
    array = np.asarray(value)
    if array.ndim == 1:
        return pd.DataFrame({"value": array})
    if array.ndim == 2:
        return pd.DataFrame(array.T, columns=[str(i) for i in range(array.shape[0])])
    raise TypeError(f"cannot validate a {array.ndim}-D array against a schema: return 1-D or 2-D")
