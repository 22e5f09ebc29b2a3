"""Long tracks: a track over the maximum duration fails alone, and decoding is block-wise in bounded memory.

The block-wise code must give the samples and features of the one-shot code
it replaced, bit for bit (data versions are digests of the stored bytes).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from examples.reference_graph import SAMPLE_RATE, reference_graph
from klio_dagster import AudioDecodeError
from klio_dagster.core import audio
from klio_dagster.core.audio import decode_file
from klio_dagster.core.execution import TrackLimits, TrackTask, compute_track
from klio_dagster.demo.catalogue import click_track, music_like, write_audio
from klio_dagster.errors import TrackTooLong
from klio_dagster.storage.registry import record_sources
from klio_dagster.storage.stores import LocalFeatureStore

REPO = Path(__file__).resolve().parents[1]


def _write_wav(path: Path, seconds: float, channels: int = 1, sr: int = 44_100, seed: int = 0) -> Path:
    y = click_track(120.0, seconds, sr=sr, seed=seed) + 0.05 * music_like(100.0, seconds, sr=sr, seed=seed)
    y = np.stack([y, -0.7 * y], axis=1) if channels == 2 else y
    sf.write(path, y, sr, subtype="PCM_16")
    return path


def _one_shot(path: Path, sr: int | None, mono: bool) -> tuple[np.ndarray, int]:
    """The decoder before block-wise decoding: the whole file, then the channel mean, then librosa.resample."""
    import librosa

    y, native_sr = sf.read(io.BytesIO(path.read_bytes()), dtype="float32", always_2d=True)
    y = y.T
    if mono:
        y = np.ascontiguousarray(y.mean(axis=0), dtype=np.float32)
    if sr is not None and sr != native_sr:
        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type="soxr_hq").astype(np.float32)
        native_sr = sr
    return y, native_sr


@pytest.mark.unit
def test_a_track_over_the_maximum_duration_fails_alone(tmp_path):
    store = LocalFeatureStore(tmp_path / "store")
    record_sources(store, {"long": str(_write_wav(tmp_path / "long.wav", 10.0)), "short": str(_write_wav(tmp_path / "short.wav", 4.0))})
    limits = TrackLimits(max_duration_s=5.0)
    features = reference_graph.names
    long_results = compute_track(TrackTask("long", features), reference_graph, store, limits)
    short_results = compute_track(TrackTask("short", features), reference_graph, store, limits)

    first, *rest = long_results
    assert first.feature == "downsample" and first.error.startswith("TrackTooLong: ")
    for words in ("long.wav", "10 s", "5 s", "max_duration_s", "KLIO_MAX_TRACK_SECONDS"):
        assert words in first.error, first.error
    assert all(r.error and "failed for this track" in r.error for r in rest), [r.error for r in rest]
    assert not [p for f in features for p in (tmp_path / "store" / f).glob("long.*")]  # nothing written for it
    assert all(r.ok for r in short_results), [r.error for r in short_results]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("channels", "sr", "mono"),
    [(2, 22_050, True), (1, 22_050, True), (1, None, True), (2, None, True), (2, 22_050, False), (2, 16_000, True)],
)
def test_block_wise_decoding_gives_the_one_shot_samples(tmp_path, channels, sr, mono):
    path = _write_wav(tmp_path / "t.wav", 7.3 + 1 / 44_100, channels=channels)  # an odd number of frames
    want, want_sr = _one_shot(path, sr, mono)
    for block_frames in (10_007, audio.DECODE_BLOCK_FRAMES):  # many block boundaries, then the default
        with path.open("rb") as fh:
            got, got_sr = decode_file(fh, sr=sr, mono=mono, block_frames=block_frames)
        assert got_sr == want_sr and got.dtype == np.float32 and got.flags.c_contiguous
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.unit
def test_block_wise_mp3_decoding_gives_the_one_shot_samples(tmp_path):
    """python-soundfile's read() seeks after each read, which makes libsndfile's MP3 decoder glitch: not here."""
    from klio_dagster.demo.catalogue import SAMPLE_RATE as RATE

    y = music_like(110.0, 6.0, sr=RATE, seed=7)
    path = tmp_path / "t.mp3"
    write_audio(path, np.stack([y, 0.9 * y], axis=1), RATE, "MP3", "MPEG_LAYER_III")
    want, _ = _one_shot(path, SAMPLE_RATE, True)
    with path.open("rb") as fh:
        got, _ = decode_file(fh, sr=SAMPLE_RATE, block_frames=4096)
    np.testing.assert_array_equal(got, want)


class _Header:
    """A SoundFile whose header announces ``frames`` frames, whatever the file holds (as MP3 headers may)."""

    def __init__(self, f: sf.SoundFile, frames: int):
        self._f, self.frames = f, frames
        self.samplerate, self.channels, self._file = f.samplerate, f.channels, f._file

    def read(self, **kwargs):
        return self._f.read(**kwargs)


@pytest.mark.unit
@pytest.mark.parametrize("announced", [0.5, 0.999, 1.001, 2.0, 20.0])
def test_a_header_that_misstates_the_length_is_trimmed_or_grown_to_what_decodes(tmp_path, announced):
    path = _write_wav(tmp_path / "t.wav", 3.0, channels=2)
    want, _ = _one_shot(path, SAMPLE_RATE, True)
    with sf.SoundFile(path) as f:
        got, _ = audio._decode_open(_Header(f, int(f.frames * announced)), SAMPLE_RATE, True, None, "t.wav", 10_007)
    np.testing.assert_array_equal(got, want)
    assert got.base is None or got.base.nbytes < 2 * got.nbytes  # no oversized buffer kept alive


@pytest.mark.unit
def test_a_header_that_understates_a_too_long_track_still_fails_while_decoding(tmp_path):
    path = _write_wav(tmp_path / "t.wav", 10.0)
    with sf.SoundFile(path) as f, pytest.raises(TrackTooLong, match=r"lasts more than 5 s .*header says 2 s.*maximum of 5 s"):
        audio._decode_open(_Header(f, f.frames // 4), SAMPLE_RATE, True, 5.0, "t.wav", 10_007)


@pytest.mark.unit
def test_decode_errors_keep_their_messages(tmp_path):
    with pytest.raises(AudioDecodeError, match="empty"):
        decode_file(io.BytesIO(b""), name="e.wav")
    with pytest.raises(AudioDecodeError, match="cannot decode"):
        decode_file(io.BytesIO(b"\x00" * 1000), name="z.wav")
    sf.write(tmp_path / "none.wav", np.zeros((0, 1), dtype=np.float32), 44_100)
    with (tmp_path / "none.wav").open("rb") as fh, pytest.raises(AudioDecodeError, match="no audio samples"):
        decode_file(fh)
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.5] * 1000, dtype=np.float32), 44_100, subtype="FLOAT")
    for sr in (None, SAMPLE_RATE):
        with (tmp_path / "nan.wav").open("rb") as fh, pytest.raises(AudioDecodeError, match="NaN or infinite"):
            decode_file(fh, sr=sr)


@pytest.mark.unit
def test_block_wise_features_give_librosas_one_shot_values():
    import librosa

    y = (click_track(97.0, 40.0, sr=SAMPLE_RATE) + 0.1 * music_like(120.0, 40.0, sr=SAMPLE_RATE)).astype(np.float32)
    y = y[: len(y) - 123]  # not a whole number of hops
    sr, hop, blocks = SAMPLE_RATE, 512, 257  # many blocks of frames
    # The mel projection is one BLAS matrix product: OpenBLAS's AVX-512 kernels round a block's columns
    # differently from the whole track's (1 float32 ulp, seen on AMD EPYC); its AVX2 kernels do not.
    np.testing.assert_allclose(
        audio.mel_power(y, sr, hop_length=hop, block_frames=blocks),
        librosa.feature.melspectrogram(y=y, sr=sr, hop_length=hop),
        rtol=2e-6, atol=0,
    )
    envelope = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop, aggregate=np.median)
    close = {"rtol": 1e-5, "atol": 1e-5}  # what that ulp becomes through dB and differences
    np.testing.assert_allclose(audio.onset_strength(y, sr, hop_length=hop, aggregate=np.median, block_frames=blocks), envelope, **close)
    np.testing.assert_allclose(
        audio.onset_strength(y, sr, hop_length=hop, block_frames=blocks),
        librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop),
        **close,
    )
    np.testing.assert_array_equal(
        audio.tempogram(envelope, win_length=344, block_frames=blocks),
        librosa.feature.tempogram(onset_envelope=envelope, sr=sr, hop_length=hop, win_length=344),
    )
    np.testing.assert_array_equal(audio.frame_rms(y, block_frames=blocks), librosa.feature.rms(y=y, frame_length=2048, hop_length=hop))
    tempo, beats = audio.beat_track(y, sr, hop_length=hop)
    want_tempo, want_beats = librosa.beat.beat_track(y=y, sr=sr, hop_length=hop)
    np.testing.assert_array_equal(tempo, want_tempo)
    np.testing.assert_array_equal(beats, want_beats)
    edges = np.unique(np.concatenate([[0.0], np.random.default_rng(0).uniform(0, len(y) / sr, 40), [len(y) / sr]]))
    power = np.concatenate([[0.0], np.cumsum(np.square(y, dtype=np.float64))])  # the whole-track running sum
    e = np.clip(np.round(edges * sr).astype(np.int64), 0, len(y))
    want = np.sqrt((power[e[1:]] - power[e[:-1]]) / np.diff(e))
    np.testing.assert_array_equal(audio.rms_per_interval(y, sr, edges, block=10_007), want)


_PEAK = textwrap.dedent(
    """
    import io, json, sys
    import numpy as np, soundfile as sf, librosa, soxr
    librosa.resample  # imports before the baseline: only decoding is measured
    from klio_dagster.core.execution import TrackLimits, TrackTask, _TrackInputs
    from klio_dagster.core.features import Decode
    from examples.reference_graph import reference_graph
    from klio_dagster.storage.stores import LocalFeatureStore
    from klio_dagster.storage.registry import record_sources

    def hwm():
        return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))

    path, code, store_dir = sys.argv[1:]
    store = LocalFeatureStore(store_dir)
    record_sources(store, {"t": path})
    before = hwm()
    if code == "one-shot":  # the decoder before block-wise decoding
        y, sr = sf.read(io.BytesIO(open(path, "rb").read()), dtype="float32", always_2d=True)
        y = librosa.resample(np.ascontiguousarray(y.T.mean(axis=0)), orig_sr=sr, target_sr=22050, res_type="soxr_hq")
        y = y.astype(np.float32)
    else:  # what compute_track runs
        y = _TrackInputs(TrackTask("t", ()), reference_graph, store, TrackLimits()).audio(Decode(22050, True)).samples
    print(json.dumps({"growth": hwm() - before, "output": y.nbytes}))
    """
)


@pytest.mark.integration
def test_peak_memory_of_decoding_a_long_track_is_its_output_plus_a_few_blocks(tmp_path):
    """20 minutes at 44.1 kHz: the float32 22,050 Hz output is 106 MB; one-shot decoding peaked at about 6x that."""
    path = tmp_path / "long.wav"
    n, sr = 20 * 60 * 44_100, 44_100
    t = np.arange(sr, dtype=np.float32) / sr
    second = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16") as out:
        for _ in range(n // sr):
            out.write(second)

    def peak(code: str) -> dict:
        run = subprocess.run(
            [sys.executable, "-c", _PEAK, str(path), code, str(tmp_path / f"store-{code}")],
            capture_output=True, text=True, cwd=REPO, check=True,
        )
        return json.loads(run.stdout.strip().splitlines()[-1])

    block_wise, one_shot = peak("block-wise"), peak("one-shot")
    bound = 1.1 * block_wise["output"] + 16 * 2**20  # the output, plus blocks of a few MB
    assert block_wise["growth"] < bound, (block_wise, bound)
    assert one_shot["growth"] > 2 * bound, (one_shot, bound)  # what this test guards against
