"""Audio helpers: pure functions over numpy arrays with explicit sample rates.

Everything that touches a whole track works block by block into one
preallocated output (see docs/benchmarks.md, "Long tracks"): decoding reads a
few seconds at a time, mixes to mono and resamples each block with a
streaming soxr resampler; the frame-wise features (mel spectrogram, onset
strength, tempogram, frame RMS) compute a few thousand frames at a time. The
results are bit for bit those of the one-shot librosa calls they replace.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from typing import IO, Callable

import numpy as np
import soundfile as sf

from klio_dagster.errors import AudioDecodeError, TrackTooLong

#: Frames read from the source at a time (about 6 s at 44.1 kHz).
DECODE_BLOCK_FRAMES = 2**18
#: Analysis frames (hops) computed at a time by the frame-wise features (about 95 s at 22,050 Hz, hop 512).
FEATURE_BLOCK_FRAMES = 4096
#: How the maximum duration is set, for error messages.
MAX_DURATION_SETTING = "max_duration_s of the klio_sources resource, or KLIO_MAX_TRACK_SECONDS"


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

    The same as :func:`decode_file` over ``io.BytesIO(data)``, without a duration limit.
    """
    return decode_file(io.BytesIO(data), sr=sr, mono=mono, name=name)


def decode_file(
    fh: IO[bytes],
    *,
    sr: int | None = None,
    mono: bool = True,
    max_duration_s: float | None = None,
    name: str = "audio",
    block_frames: int = DECODE_BLOCK_FRAMES,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode an audio file (WAV, FLAC, OGG, MP3, ...), or a window of it, block by block.

    Blocks of ``block_frames`` frames are read as float32, mixed to mono if
    asked, resampled with a streaming soxr resampler (high quality) and
    written into one preallocated array: peak memory is the output plus a
    few blocks, whatever the file's length. The samples are bit for bit
    those of a one-shot ``soundfile.read``, channel mean and
    ``librosa.resample(..., res_type="soxr_hq")`` (same length,
    ``ceil(frames * sr / native_sr)``, zero-padded at the end like librosa).

    Parameters
    ----------
    fh : binary file object
        An open, seekable audio file (read from its current position).
    sr : int, optional
        Target sample rate in Hz; ``None`` keeps the file's rate.
    mono : bool
        Average the channels into one.
    max_duration_s : float, optional
        Longest track decoded, in seconds; ``None``: no limit.
    name : str
        What to call the file in error messages.
    block_frames : int
        Frames read at a time (at the file's rate).
    offset_s : float >= 0
        Start of the window decoded, in seconds from the start of the file.
    duration_s : float > 0, optional
        Length of the window, in seconds; ``None``: to the end. The window is
        ``librosa.load``'s: ``int(offset_s * native_sr)`` frames skipped, at
        most ``int(duration_s * native_sr)`` decoded; a file that ends sooner
        gives a shorter window. The samples are ``librosa.load(offset=...,
        duration=...)``'s bit for bit, except for MP3, where librosa seeks and
        libsndfile's MP3 seek shifts the samples after it (by up to 1e-3): here
        they are those of a full decode.

    Returns
    -------
    y : np.ndarray, shape=(n,) if mono else (channels, n), dtype float32
        Samples in [-1, 1], C-contiguous.
    sr : int
        Sample rate of ``y`` in Hz.

    Raises
    ------
    TrackTooLong
        If the header (or, for files whose header is inexact, the decoded
        frames) says the track is longer than ``max_duration_s``; checked
        before the output is allocated.
    AudioDecodeError
        If the file is empty, cannot be decoded, holds no samples (or none
        in the window), or decodes to NaN or infinite samples.

    Notes
    -----
    MP3 and OGG headers may announce a frame count that differs from what
    decodes: the output is sized from the header, then trimmed or grown to
    the frames actually decoded.
    """
    start = fh.tell()
    if fh.seek(0, io.SEEK_END) == start:
        raise AudioDecodeError(f"{name}: the file is empty (0 bytes)")
    fh.seek(start)
    try:
        with sf.SoundFile(fh) as f:
            window = _skip_to(f, offset_s, name, block_frames), duration_s
            return _decode_open(f, sr, mono, max_duration_s, name, block_frames, window)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioDecodeError(f"{name}: cannot decode audio ({exc}); is it WAV, FLAC, OGG or MP3?") from exc


def _too_long(name: str, seconds: float, max_duration_s: float, header_s: float | None = None) -> TrackTooLong:
    lasts = f"{seconds:,.0f} s ({seconds / 3600:.2f} h)"
    if header_s is not None:  # found while decoding: the header understated the length
        lasts = f"more than {lasts} (its header says {header_s:,.0f} s)"
    return TrackTooLong(
        f"{name}: the track lasts {lasts}, longer than the maximum of "
        f"{max_duration_s:,.0f} s a worker decodes; raise {MAX_DURATION_SETTING} to compute it "
        "(a worker's memory grows with the duration: docs/benchmarks.md, Long tracks)"
    )


def _skip_to(f: sf.SoundFile, offset_s: float, name: str, block_frames: int) -> int:
    """Move past the first ``offset_s`` seconds of ``f``; the frames skipped.

    Seeks where that is exact; MP3 is decoded and dropped instead, since a seek
    makes libsndfile's MP3 decoder decode the following samples wrongly (see :func:`_read_into`).
    """
    if offset_s < 0 or not math.isfinite(offset_s):
        raise AudioDecodeError(f"{name}: the decode offset must be a finite number of seconds >= 0, not {offset_s}")
    start = int(offset_s * f.samplerate)  # librosa.load truncates, and so do we
    if start == 0:
        return 0
    if f.frames > 0 and start >= f.frames:
        raise AudioDecodeError(
            f"{name}: the decode window starts at {offset_s} s, after the end of the track ({f.frames / f.samplerate:.2f} s)"
        )
    if f.seekable() and f.format not in {"MP3", "MPEG"}:
        f.seek(start)
        return start
    buf, skipped = np.empty((block_frames, f.channels), dtype=np.float32), 0
    while skipped < start:
        read = _read_into(f, buf[: min(block_frames, start - skipped)])
        if read == 0:
            raise AudioDecodeError(f"{name}: the decode window starts at {offset_s} s, after the end of the track")
        skipped += read
    return start


def _decode_open(
    f: sf.SoundFile,
    sr: int | None,
    mono: bool,
    max_duration_s: float | None,
    name: str,
    block_frames: int,
    window: tuple[int, float | None] = (0, None),
) -> tuple[np.ndarray, int]:
    skipped, duration_s = window
    native_sr, channels = int(f.samplerate), int(f.channels)
    remaining = None if duration_s is None else int(duration_s * native_sr)
    if remaining is not None and remaining <= 0:
        raise AudioDecodeError(f"{name}: the decode window's duration must be > 0 s, not {duration_s}")
    announced = max(int(f.frames) - skipped, 0)
    if remaining is not None:
        announced = min(announced, remaining)
    if max_duration_s is not None and announced / native_sr > max_duration_s:
        raise _too_long(name, announced / native_sr, max_duration_s)
    max_frames = None if max_duration_s is None else math.floor(max_duration_s * native_sr)
    out_sr = native_sr if sr is None else int(sr)
    ratio = out_sr / native_sr

    def out_length(frames: int) -> int:  # librosa.resample's length: ceil(frames * target / orig)
        return frames if out_sr == native_sr else int(np.ceil(frames * (float(out_sr) / native_sr)))

    out_channels = 1 if mono else channels
    out = np.empty((out_length(announced),) if mono else (out_channels, out_length(announced)), dtype=np.float32)
    stream = None
    if out_sr != native_sr:
        import soxr

        stream = soxr.ResampleStream(native_sr, out_sr, out_channels, dtype="float32", quality="HQ")
    buf = np.empty((block_frames, channels), dtype=np.float32)
    pos = decoded = 0
    last = False
    while not last:
        wanted = block_frames if remaining is None else min(block_frames, remaining - decoded)
        block = buf[: _read_into(f, buf[:wanted])] if wanted else buf[:0]
        decoded += len(block)
        last = len(block) < block_frames or (remaining is not None and decoded >= remaining)
        if max_frames is not None and decoded > max_frames:
            raise _too_long(name, decoded / native_sr, max_duration_s, announced / native_sr)
        # (n, channels) -> (n,) mono: the same mean as over the whole file; one channel is itself.
        if mono:
            chunk = block[:, 0] if channels == 1 else block.T.mean(axis=0)
        else:
            chunk = block
        if stream is not None:
            chunk = stream.resample_chunk(chunk, last=last)
        if len(chunk) == 0:
            continue
        if not np.isfinite(chunk).all():
            raise AudioDecodeError(f"{name}: decoded audio contains NaN or infinite samples")
        end = pos + len(chunk)
        if end > out.shape[-1]:  # the header announced fewer frames than there are
            out = _grown(out, max(end, out_length(decoded + block_frames), int(out.shape[-1] * 1.25)))
        if mono:
            out[pos:end] = chunk
        else:
            out[:, pos:end] = chunk.T
        pos = end
    if decoded == 0:
        raise AudioDecodeError(f"{name}: the file holds no audio samples")
    n = out_length(decoded)
    if out.shape[-1] < n:
        out = _grown(out, n)
    if pos < n:  # soxr may yield a sample less than librosa's length, which zero-pads
        out[..., pos:n] = 0.0
    if out.shape[-1] > n:  # the header announced more frames than there are
        out = out[..., :n] if out.shape[-1] - n <= ratio * block_frames else out[..., :n].copy()
    return out, out_sr


def _read_into(f: sf.SoundFile, buf: np.ndarray) -> int:
    """Read up to ``len(buf)`` frames into ``buf`` (C-contiguous float32, ``(frames, channels)``); frames read.

    ``SoundFile.read`` seeks to its own idea of the position after every
    read, and a seek makes libsndfile 1.2's MP3 decoder (mpg123) decode the
    next few thousand samples wrongly (errors up to 0.5 in full scale): a
    one-shot read never sees it, block-wise reads would. So this calls
    libsndfile's ``sf_readf_float`` as ``SoundFile.read`` does, without the seeks.
    """
    lib, ffi = getattr(sf, "_snd", None), getattr(sf, "_ffi", None)
    if lib is None or ffi is None or not hasattr(f, "_file"):  # another python-soundfile: its public read
        return len(f.read(frames=len(buf), dtype="float32", always_2d=True, out=buf))
    frames = lib.sf_readf_float(f._file, ffi.cast("float *", ffi.from_buffer(buf)), len(buf))
    sf._error_check(lib.sf_error(f._file))
    return int(frames)


def _grown(out: np.ndarray, length: int) -> np.ndarray:
    grown = np.empty((*out.shape[:-1], length), dtype=out.dtype)
    grown[..., : out.shape[-1]] = out
    return grown


def rms_per_interval(y: np.ndarray, sr: int, boundaries_s: np.ndarray, *, block: int = 2**20) -> np.ndarray:
    """Root-mean-square amplitude of ``y`` between consecutive boundaries.

    Parameters
    ----------
    y : np.ndarray, shape=(n,)
        Mono samples.
    sr : int
        Sample rate of ``y`` in Hz.
    boundaries_s : np.ndarray, shape=(k,)
        Increasing times in seconds; ``k - 1`` intervals.
    block : int
        Samples squared and summed at a time (float64 work memory: ``8 * block`` bytes).

    Returns
    -------
    rms : np.ndarray, shape=(k - 1,)
        RMS amplitude per interval (0 for an empty interval).

    Notes
    -----
    Interval sums are differences of the running float64 sum of squares,
    accumulated block by block in the same order as one ``np.cumsum`` over
    the whole track (so the values are the same), keeping only the values at
    the boundaries.
    """
    edges = np.clip(np.round(np.asarray(boundaries_s) * sr).astype(np.int64), 0, len(y))
    power = np.zeros(len(edges), dtype=np.float64)  # running sum of squares before sample edges[i]
    carry = 0.0
    for start in range(0, len(y), block):
        part = np.square(y[start : start + block], dtype=np.float64)
        part[0] += carry
        np.cumsum(part, out=part)
        inside = (edges > start) & (edges <= start + len(part))
        power[inside] = part[edges[inside] - 1 - start]
        carry = float(part[-1])
    lengths = np.diff(edges)
    sums = power[1:] - power[:-1]
    return np.sqrt(np.divide(sums, lengths, out=np.zeros_like(sums), where=lengths > 0))


def _framewise(
    fn: Callable[[np.ndarray], np.ndarray], y: np.ndarray, *, n_fft: int, hop_length: int, block_frames: int
) -> np.ndarray:
    """``fn`` (a librosa frame-wise analysis of a signal, ``center=False``) over ``y`` as if ``center=True``.

    Frame ``t`` is centred on sample ``t * hop_length`` with zero padding at
    both ends (librosa's ``pad_mode="constant"``): ``1 + len(y) // hop_length``
    frames, computed ``block_frames`` at a time from a zero-padded slice of
    ``y`` and written into one preallocated ``(rows, frames)`` array.
    """
    n_frames = 1 + len(y) // hop_length
    half = n_fft // 2
    out = None
    for t0 in range(0, n_frames, block_frames):
        t1 = min(n_frames, t0 + block_frames)
        lo, hi = t0 * hop_length - half, (t1 - 1) * hop_length - half + n_fft  # samples of y under these frames
        if lo >= 0 and hi <= len(y):
            segment = y[lo:hi]
        else:
            segment = np.zeros(hi - lo, dtype=y.dtype)
            a, b = max(lo, 0), min(hi, len(y))
            segment[a - lo : b - lo] = y[a:b]
        part = fn(segment)
        if out is None:
            out = np.empty((*part.shape[:-1], n_frames), dtype=part.dtype)
        out[..., t0:t1] = part
    return out


def mel_power(
    y: np.ndarray,
    sr: int,
    *,
    n_mels: int = 128,
    n_fft: int = 2048,
    hop_length: int = 512,
    block_frames: int = FEATURE_BLOCK_FRAMES,
) -> np.ndarray:
    """Mel power spectrogram, ``librosa.feature.melspectrogram(y=y, sr=sr, ...)``'s values, in blocks of frames.

    Parameters
    ----------
    y : np.ndarray, shape=(n,)
        Mono samples.
    sr : int
        Sample rate in Hz.
    n_mels, n_fft, hop_length : int
        Mel bands, FFT size and hop (samples), as in librosa (Hann window, centred frames, zero padding).
    block_frames : int
        Frames computed at a time: the work memory is that many STFT columns
        (``block_frames * (n_fft // 2 + 1) * 8`` bytes), not the whole track's.

    Returns
    -------
    S : np.ndarray, shape=(n_mels, 1 + n // hop_length), dtype float32
        Power (magnitude squared) per mel band and frame.
    """
    import librosa

    def mel(segment: np.ndarray, center: bool = False) -> np.ndarray:
        return librosa.feature.melspectrogram(
            y=segment, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, center=center
        )

    if 1 + len(y) // hop_length <= block_frames:
        return mel(y, center=True)
    return _framewise(mel, y, n_fft=n_fft, hop_length=hop_length, block_frames=block_frames)


def mel_spectrogram_db(
    y: np.ndarray | None,
    sr: int,
    *,
    S: np.ndarray | None = None,
    n_mels: int = 128,
    hop_length: int = 512,
    top_db: float = 80.0,
) -> np.ndarray:
    """Mel power spectrogram in decibels relative to its maximum.

    Computed in blocks of frames (:func:`mel_power`); the values are those of
    ``librosa.power_to_db(librosa.feature.melspectrogram(...), ref=np.max)``.

    Parameters
    ----------
    y : np.ndarray, shape=(n,), or None
        Mono samples; not read when ``S`` is given.
    sr : int
        Sample rate in Hz.
    S : np.ndarray, shape=(n_mels, frames), optional
        The mel power spectrogram already computed by :func:`mel_power` (same ``n_mels`` and ``hop_length``).

    Returns
    -------
    S_db : np.ndarray, shape=(n_mels, frames)
        Values in ``[-top_db, 0]`` dB.
    """
    import librosa

    mel = mel_power(y, sr, n_mels=n_mels, hop_length=hop_length) if S is None else S
    return librosa.power_to_db(mel, ref=np.max, top_db=top_db).astype(np.float32, copy=False)


def onset_strength(
    y: np.ndarray | None,
    sr: int,
    *,
    S: np.ndarray | None = None,
    hop_length: int = 512,
    n_fft: int = 2048,
    aggregate: Callable[..., np.ndarray] = np.mean,
    block_frames: int = FEATURE_BLOCK_FRAMES,
) -> np.ndarray:
    """Spectral-flux onset strength, ``librosa.onset.onset_strength(y=y, sr=sr, ...)``'s values, in blocks of frames.

    The mel spectrogram (128 bands up to ``sr / 2``) is computed with
    :func:`mel_power` (a few thousand STFT columns at a time), then converted
    to dB and differenced by librosa exactly as ``onset_strength`` does.

    Parameters
    ----------
    y : np.ndarray, shape=(n,), or None
        Mono samples; not read when ``S`` is given.
    sr : int
        Sample rate in Hz.
    S : np.ndarray, shape=(128, 1 + n // hop_length), optional
        The mel power spectrogram already computed by :func:`mel_power` (same ``n_fft`` and ``hop_length``).
    hop_length, n_fft : int
        Hop and FFT size, in samples.
    aggregate : callable
        How the bands are combined per frame (``np.mean``: librosa's default; ``np.median``: what its beat tracker uses).

    Returns
    -------
    onset_envelope : np.ndarray, shape=(1 + n // hop_length,), dtype float32
    """
    import librosa

    if S is None:
        S = mel_power(y, sr, n_fft=n_fft, hop_length=hop_length, block_frames=block_frames)
    return librosa.onset.onset_strength(S=librosa.power_to_db(S), sr=sr, n_fft=n_fft, hop_length=hop_length, aggregate=aggregate)


def tempogram(
    onset_envelope: np.ndarray, *, win_length: int, block_frames: int = FEATURE_BLOCK_FRAMES
) -> np.ndarray:
    """Autocorrelation tempogram, ``librosa.feature.tempogram(onset_envelope=..., win_length=...)``'s values.

    librosa transforms every frame's window at once (several times the
    tempogram's own size in FFT buffers); this computes ``block_frames``
    columns at a time into the one ``(win_length, frames)`` float64 result.
    """
    import librosa

    n = onset_envelope.shape[-1]
    half = win_length // 2
    padded = np.pad(onset_envelope, (half, half), mode="linear_ramp", end_values=[0, 0])
    window = librosa.filters.get_window("hann", win_length, fftbins=True)[:, np.newaxis]
    out = None
    for t0 in range(0, n, block_frames):
        t1 = min(n, t0 + block_frames)
        frames = librosa.util.frame(padded[t0 : t1 - 1 + win_length], frame_length=win_length, hop_length=1)
        part = librosa.util.normalize(librosa.autocorrelate(frames * window, axis=-2), norm=np.inf, axis=-2)
        if out is None:
            out = np.empty((win_length, n), dtype=part.dtype)
        out[:, t0:t1] = part
    return out


def beat_track(
    y: np.ndarray | None, sr: int, *, S: np.ndarray | None = None, hop_length: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """``librosa.beat.beat_track(y=y, sr=sr, hop_length=hop_length)``, its results, in bounded work memory.

    The onset envelope (band median, :func:`onset_strength`) and the
    tempogram behind the global tempo (:func:`tempogram`, 8 s windows) are
    computed in blocks of frames; librosa then estimates the tempo from that
    tempogram and runs its dynamic-programming tracker, as ``beat_track`` does.

    Parameters
    ----------
    y : np.ndarray, shape=(n,), or None
        Mono samples; not read when ``S`` is given.
    sr : int
        Sample rate in Hz.
    S : np.ndarray, shape=(128, 1 + n // hop_length), optional
        The mel power spectrogram already computed by :func:`mel_power` (n_fft 2048, same ``hop_length``).
    hop_length : int
        Hop in samples.

    Returns
    -------
    tempo : np.ndarray, shape=(1,)
        Global tempo in beats per minute (0 for a signal without onsets).
    beats : np.ndarray of int
        Beat positions, in frames.
    """
    import librosa

    envelope = onset_strength(y, sr, S=S, hop_length=hop_length, aggregate=np.median)
    if not envelope.any():
        return librosa.beat.beat_track(onset_envelope=envelope, sr=sr, hop_length=hop_length)
    win_length = librosa.time_to_frames(8.0, sr=sr, hop_length=hop_length).item()  # librosa's ac_size
    tg = tempogram(envelope, win_length=win_length)
    bpm = librosa.feature.tempo(tg=tg, sr=sr, hop_length=hop_length)
    del tg
    return librosa.beat.beat_track(onset_envelope=envelope, sr=sr, hop_length=hop_length, bpm=bpm)


def frame_rms(
    y: np.ndarray, *, frame_length: int = 2048, hop_length: int = 512, block_frames: int = FEATURE_BLOCK_FRAMES
) -> np.ndarray:
    """RMS per centred frame, ``librosa.feature.rms(y=y, ...)``'s values, without framing the whole track at once.

    Returns
    -------
    rms : np.ndarray, shape=(1, 1 + n // hop_length), dtype float32
    """
    import librosa

    def rms(segment: np.ndarray, center: bool = False) -> np.ndarray:
        return librosa.feature.rms(y=segment, frame_length=frame_length, hop_length=hop_length, center=center)

    if 1 + len(y) // hop_length <= block_frames:
        return rms(y, center=True)
    return _framewise(rms, y, n_fft=frame_length, hop_length=hop_length, block_frames=block_frames)


#: WAVE_FORMAT_IEEE_FLOAT, and the largest RIFF payload (its size field is 32 bits).
_WAVE_FLOAT, _RIFF_MAX_BYTES = 3, 2**32 - 1


def encode_float_wav(y: np.ndarray, sr: int) -> bytes:
    """Samples as a 32-bit float WAV file, byte for byte the same for the same samples.

    libsndfile adds a PEAK chunk with the time of writing to float WAVs, so
    the same audio written twice would differ; this writer has no clock in it.
    Mono float32 samples are copied once, into the returned bytes.

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
    samples = np.ascontiguousarray(y.T, dtype="<f4")  # interleaved frames; no copy for mono little-endian float32
    size = samples.nbytes
    fmt = struct.pack("<HHIIHHH", _WAVE_FLOAT, channels, sr, sr * channels * 4, channels * 4, 32, 0)
    body_size = 4 + (8 + len(fmt)) + (8 + 4) + 8 + size
    if body_size > _RIFF_MAX_BYTES:
        raise ValueError(f"{frames} frames x {channels} channels is more than a WAV file holds (4 GiB)")
    header = (
        b"RIFF" + struct.pack("<I", body_size) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"fact" + struct.pack("<II", 4, frames)
        + b"data" + struct.pack("<I", size)
    )
    return b"".join((header, memoryview(samples).cast("B")))
