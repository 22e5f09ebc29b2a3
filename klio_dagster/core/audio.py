"""Audio helpers: pure functions over numpy arrays with explicit sample rates."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from klio_dagster.errors import AudioDecodeError

#: Resampling quality used everywhere (soxr's high quality mode).
RES_TYPE = "soxr_hq"


@dataclass(frozen=True)
class Audio:
    """Decoded audio of one track.

    Attributes
    ----------
    samples : np.ndarray, shape=(n,) or (channels, n), dtype float32
        Samples in [-1, 1] (mono when the feature asked for mono).
    sample_rate : int
        Samples per second, in Hz.
    """

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.samples.shape[-1] / self.sample_rate


def decode(data: bytes, *, sr: int | None = None, mono: bool = True, name: str = "audio") -> tuple[np.ndarray, int]:
    """Decode an encoded audio file (WAV, FLAC, OGG, MP3, ...) held in memory.

    Parameters
    ----------
    data : bytes
        The encoded file.
    sr : int, optional
        Target sample rate in Hz; ``None`` keeps the file's rate.
    mono : bool
        Average the channels into one.
    name : str
        What to call the file in error messages.

    Returns
    -------
    y : np.ndarray, shape=(n,) if mono else (channels, n), dtype float32
        Samples in [-1, 1].
    sr : int
        Sample rate of ``y`` in Hz.

    Raises
    ------
    AudioDecodeError
        If the file is empty, cannot be decoded, or holds no samples.
    """
    if not data:
        raise AudioDecodeError(f"{name}: the file is empty (0 bytes)")
    try:
        y, native_sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioDecodeError(f"{name}: cannot decode audio ({exc}); is it WAV, FLAC, OGG or MP3?") from exc
    if y.shape[0] == 0:
        raise AudioDecodeError(f"{name}: the file holds no audio samples")
    y = y.T
    if mono:
        y = to_mono(y)
    if sr is not None and sr != native_sr:
        y = resample(y, orig_sr=native_sr, target_sr=sr)
        native_sr = sr
    if not np.all(np.isfinite(y)):
        raise AudioDecodeError(f"{name}: decoded audio contains NaN or infinite samples")
    return y, int(native_sr)


def to_mono(y: np.ndarray) -> np.ndarray:
    """Average channels: ``(channels, n)`` to ``(n,)``; 1-D input is returned as is."""
    return y if y.ndim == 1 else np.ascontiguousarray(y.mean(axis=0), dtype=np.float32)


def resample(y: np.ndarray, *, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis from ``orig_sr`` to ``target_sr`` (Hz) with soxr."""
    import librosa

    return librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr, res_type=RES_TYPE).astype(np.float32)


def rms_per_interval(y: np.ndarray, sr: int, boundaries_s: np.ndarray) -> np.ndarray:
    """Root-mean-square amplitude of ``y`` between consecutive boundaries.

    Parameters
    ----------
    y : np.ndarray, shape=(n,)
        Mono samples.
    sr : int
        Sample rate of ``y`` in Hz.
    boundaries_s : np.ndarray, shape=(k,)
        Increasing times in seconds; ``k - 1`` intervals.

    Returns
    -------
    rms : np.ndarray, shape=(k - 1,)
        RMS amplitude per interval (0 for an empty interval).
    """
    edges = np.clip(np.round(np.asarray(boundaries_s) * sr).astype(np.int64), 0, len(y))
    power = np.concatenate([[0.0], np.cumsum(np.square(y, dtype=np.float64))])
    lengths = np.diff(edges)
    sums = power[edges[1:]] - power[edges[:-1]]
    return np.sqrt(np.divide(sums, lengths, out=np.zeros_like(sums), where=lengths > 0))


def mel_spectrogram_db(y: np.ndarray, sr: int, *, n_mels: int = 128, hop_length: int = 512, top_db: float = 80.0) -> np.ndarray:
    """Mel power spectrogram in decibels relative to its maximum.

    Returns
    -------
    S_db : np.ndarray, shape=(n_mels, frames)
        Values in ``[-top_db, 0]`` dB.
    """
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=n_mels, hop_length=hop_length)
    return librosa.power_to_db(mel, ref=np.max, top_db=top_db).astype(np.float32)


#: WAVE_FORMAT_IEEE_FLOAT, and the largest RIFF payload (its size field is 32 bits).
_WAVE_FLOAT, _RIFF_MAX_BYTES = 3, 2**32 - 1


def encode_float_wav(y: np.ndarray, sr: int) -> bytes:
    """Samples as a 32-bit float WAV file, byte for byte the same for the same samples.

    libsndfile adds a PEAK chunk with the time of writing to float WAVs, so
    the same audio written twice would differ; this writer has no clock in it.

    Parameters
    ----------
    y : np.ndarray, shape=(n,) or (channels, n)
        Samples (converted to float32).
    sr : int
        Sample rate in Hz.

    Returns
    -------
    bytes
        A RIFF/WAVE file: ``fmt`` (IEEE float, 32 bits), ``fact`` and ``data`` chunks.
    """
    y = np.asarray(y, dtype=np.float32)
    channels = 1 if y.ndim == 1 else y.shape[0]
    frames = y.shape[-1]
    data = np.ascontiguousarray(y.T, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHHH", _WAVE_FLOAT, channels, sr, sr * channels * 4, channels * 4, 32, 0)
    body = (
        b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"fact" + struct.pack("<II", 4, frames)
        + b"data" + struct.pack("<I", len(data)) + data
    )
    if len(body) > _RIFF_MAX_BYTES:
        raise ValueError(f"{frames} frames x {channels} channels is more than a WAV file holds (4 GiB)")
    return b"RIFF" + struct.pack("<I", len(body)) + body
