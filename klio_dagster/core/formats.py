"""Output formats: how a feature's value becomes bytes in the store and back.

The built-in formats are in :data:`BUILTIN_FORMATS`, by name. A format of your
own is an :class:`OutputFormat` passed to ``@feature(output=...)``: there is no
global registry to change, so every process that imports the feature (a Beam
worker too) has the format with it. :func:`as_frame` gives the tabular view of
a value that a pandera schema validates, whatever the format.

Built-ins
---------
``npy``
    a NumPy array, ``np.save`` without pickles (read back as the same array).
``parquet``
    a pandas DataFrame, without its index.
``json``
    a JSON value (dict, list, number, string); keys sorted, NaN refused.
``png``
    an image: a matplotlib ``Figure`` (drawn at its own size and dpi, with no
    timestamp, so the bytes depend on the figure alone); a 2-D array, one
    pixel per element, colour-mapped with magma from its minimum to its
    maximum, row 0 at the bottom (a ``(bins, frames)`` spectrogram reads as one);
    or PNG bytes, stored as they are (checked to be PNG). Read back as bytes.
``audio``
    an :class:`~klio_dagster.core.audio.Audio`: a 32-bit float WAV with its
    sample rate and channels in the header (read back as the same ``Audio``).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from klio_dagster.core.audio import Audio, encode_float_wav
from klio_dagster.errors import UnknownFormat

if TYPE_CHECKING:
    from collections.abc import Mapping

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class OutputFormat:
    """A named serialisation with a file extension.

    Attributes
    ----------
    name : str
        What the metadata and the UI call it (``"svg"``).
    extension : str
        The stored file's extension, without the dot.
    encode : callable
        The feature's value to bytes; raise ``TypeError`` for a value it cannot store
        (the pair fails with that message and nothing is written).
    decode : callable
        Stored bytes back to the value that readers receive.
    media_type : str, optional
        The MIME type, shown with the output (``"image/svg+xml"``).

    Encoding must be deterministic (the same value, the same bytes): the bytes'
    digest is the output's data version, so a format that embeds a timestamp
    would make every recompute look like new data to its readers.
    """

    name: str
    extension: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    media_type: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.extension.isalnum():
            raise UnknownFormat(f"an output format needs a name and an alphanumeric extension, not {self.extension!r}")


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


def _encode_png(value: Any) -> bytes:
    """A Figure drawn, a 2-D array colour-mapped (row 0 at the bottom), PNG bytes as they are."""
    if isinstance(value, (bytes, bytearray)):
        if not bytes(value).startswith(PNG_MAGIC):
            raise TypeError("png output got bytes that are not a PNG image (no PNG signature)")
        return bytes(value)
    if hasattr(value, "savefig"):
        buf = io.BytesIO()
        # No "Software" text chunk and no timestamp: the same figure gives the same bytes.
        value.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()
    array = np.asarray(value)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise TypeError(
            f"png output needs a matplotlib Figure, a 2-D numeric array or PNG bytes, got {type(value).__name__}"
            + (f" of shape {array.shape}" if array.ndim else "")
        )
    if not np.isfinite(array).all():
        raise TypeError("png output got an array with NaN or infinite values")
    return render_png(array)


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


#: The built-in formats, by name (read-only: pass an :class:`OutputFormat` of your own to add one).
BUILTIN_FORMATS: Mapping[str, OutputFormat] = MappingProxyType({
    f.name: f
    for f in (
        OutputFormat("parquet", "parquet", _encode_parquet, lambda b: pd.read_parquet(io.BytesIO(b)),
                     "application/vnd.apache.parquet"),
        OutputFormat("npy", "npy", _encode_npy, lambda b: np.load(io.BytesIO(b), allow_pickle=False),
                     "application/x-npy"),
        OutputFormat("json", "json", _encode_json, lambda b: json.loads(b), "application/json"),
        OutputFormat("png", "png", _encode_png, lambda b: b, "image/png"),
        OutputFormat("audio", "wav", _encode_audio, _decode_audio, "audio/wav"),
    )
})


def get_format(output: str | OutputFormat) -> OutputFormat:
    """A built-in format by name, or ``output`` itself if it is an :class:`OutputFormat`."""
    if isinstance(output, OutputFormat):
        return output
    try:
        return BUILTIN_FORMATS[output]
    except (KeyError, TypeError):
        raise UnknownFormat(
            f"unknown output format {output!r}: choose one of {sorted(BUILTIN_FORMATS)}, "
            "or pass an OutputFormat of your own (docs/features.md, Output formats)"
        ) from None


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
