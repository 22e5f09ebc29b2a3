"""Peak memory of one long track: one-shot (the code before the fix) against block-wise, side by side.

A generated 44.1 kHz 16-bit WAV of ``--minutes`` minutes (mono, and stereo)
is measured in fresh processes, one at a time, each with one BLAS thread as
klio-dagster's workers run:

* decode to 22,050 Hz mono: the one-shot path (read the file into memory,
  ``soundfile.read`` it whole, mean the channels, ``librosa.resample``)
  against :func:`klio_dagster.core.audio.decode_file`;
* the whole reference graph for that track (``compute_track`` with a local
  store): the one-shot path (the decoder above, ``librosa.beat.beat_track``,
  the whole-track mel spectrogram and running sum, the WAV writer that
  concatenated bytes) against the code as it is.

The peak is the process's high-water mark (``VmHWM``), imports included. The
per-worker bound (MB per minute of audio plus a constant) is fitted on the
block-wise graph at ``--minutes`` and half of it.

    python benchmarks/long_track_memory.py              # 60 minutes, about 6 minutes to run
    python benchmarks/long_track_memory.py --minutes 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))
sys.path.insert(0, str(REPO))

SR_IN, SR_OUT = 44_100, 22_050


def write_track(path: Path, minutes: float, channels: int) -> None:
    """A pulsed tone with noise (so that every feature has work to do), written 10 s at a time."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    n = int(minutes * 60 * SR_IN)
    with sf.SoundFile(path, "w", SR_IN, channels, format="WAV", subtype="PCM_16") as out:
        for start in range(0, n, 10 * SR_IN):
            t = np.arange(start, min(n, start + 10 * SR_IN)) / SR_IN
            y = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.1 * t))
            y += 0.5 * ((t % 0.5) < 0.01) * rng.standard_normal(len(t)) + 0.02 * rng.standard_normal(len(t))
            y = np.clip(y, -1, 1)
            out.write(np.stack([y, 0.8 * y], axis=1) if channels == 2 else y)


def high_water_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def use_one_shot_code() -> None:
    """Put back the whole-track code paths this benchmark compares against (the code before the fix)."""
    import io
    import struct

    import librosa
    import numpy as np
    import soundfile as sf

    from examples import reference_graph
    from klio_dagster.core import audio, execution

    def decode_file(fh, *, sr=None, mono=True, max_duration_s=None, name="audio"):
        data = fh.read()
        y, native_sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        y = y.T
        if mono:
            y = np.ascontiguousarray(y.mean(axis=0), dtype=np.float32)
        if sr is not None and sr != native_sr:
            y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type="soxr_hq").astype(np.float32)
            native_sr = sr
        assert np.all(np.isfinite(y))
        return y, int(native_sr)

    def rms_per_interval(y, sr, boundaries_s):
        edges = np.clip(np.round(np.asarray(boundaries_s) * sr).astype(np.int64), 0, len(y))
        power = np.concatenate([[0.0], np.cumsum(np.square(y, dtype=np.float64))])
        lengths = np.diff(edges)
        sums = power[edges[1:]] - power[edges[:-1]]
        return np.sqrt(np.divide(sums, lengths, out=np.zeros_like(sums), where=lengths > 0))

    def mel_spectrogram_db(y, sr, *, n_mels=128, hop_length=512, top_db=80.0):
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_mels=n_mels, hop_length=hop_length)
        return librosa.power_to_db(mel, ref=np.max, top_db=top_db).astype(np.float32)

    def encode_float_wav(y, sr):
        y = np.asarray(y, dtype=np.float32)
        channels, frames = (1 if y.ndim == 1 else y.shape[0]), y.shape[-1]
        data = np.ascontiguousarray(y.T, dtype="<f4").tobytes()
        fmt = struct.pack("<HHIIHHH", 3, channels, sr, sr * channels * 4, channels * 4, 32, 0)
        body = (
            b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<II", 4, frames)
            + b"data" + struct.pack("<I", len(data)) + data
        )
        return b"RIFF" + struct.pack("<I", len(body)) + body

    execution.decode_file = decode_file
    audio.rms_per_interval = reference_graph.rms_per_interval = rms_per_interval
    audio.mel_spectrogram_db = reference_graph.mel_spectrogram_db = mel_spectrogram_db
    audio.encode_float_wav = encode_float_wav
    from klio_dagster.core import formats

    formats.encode_float_wav = encode_float_wav
    reference_graph.beat_track = lambda y, sr, hop_length: librosa.beat.beat_track(y=y, sr=sr, hop_length=hop_length)


def measure(what: str, code: str, path: str) -> dict:
    """In this (fresh) process: ``what`` is "decode" or "graph", ``code`` "one-shot" or "block-wise"."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    import librosa  # noqa: F401  (imports count in both columns alike)

    from examples.reference_graph import SAMPLE_RATE, reference_graph
    from klio_dagster.core import execution
    from klio_dagster.storage.registry import record_sources
    from klio_dagster.storage.stores import LocalFeatureStore

    if code == "one-shot":
        use_one_shot_code()
    start_mb, start = high_water_mb(), time.perf_counter()
    if what == "decode":
        with open(path, "rb") as fh:
            y, _ = execution.decode_file(fh, sr=SAMPLE_RATE, mono=True)
        assert y.ndim == 1 and len(y) > 0
    else:
        with tempfile.TemporaryDirectory(prefix="klio-long-") as store_dir:
            store = LocalFeatureStore(store_dir)
            record_sources(store, {"long": path})
            limits = execution.TrackLimits(max_source_bytes=2**40, max_duration_s=24 * 3600.0)
            task = execution.TrackTask("long", reference_graph.names)
            errors = [r.error for r in execution.compute_track(task, reference_graph, store, limits) if r.error]
        assert not errors, errors
    return {"peak_mb": round(high_water_mb(), 1), "imports_mb": round(start_mb, 1), "seconds": round(time.perf_counter() - start, 1)}


def run(what: str, code: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", what, code, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="track length (default 60)")
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    parser.add_argument("--no-fit", action="store_true", help="skip the second, half-length graph run (the bound's fit)")
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    with tempfile.TemporaryDirectory(prefix="klio-long-audio-") as tmp:
        graph_mb = {}
        for channels in args.channels:
            path = Path(tmp) / f"long-{channels}ch.wav"
            write_track(path, args.minutes, channels)  # generated outside the measured processes
            label = "mono" if channels == 1 else "stereo"
            print(f"{args.minutes:g} min {label} 44.1 kHz 16-bit WAV ({path.stat().st_size / 1e6:,.0f} MB), peak RSS per process:", flush=True)
            for what, title in (("decode", "decode to 22,050 Hz mono"), ("graph", "reference graph (compute_track)")):
                before, after = run(what, "one-shot", path), run(what, "block-wise", path)
                print(
                    f"  {title:32s} one-shot {before['peak_mb']:7.0f} MB ({before['seconds']:5.1f} s)   "
                    f"block-wise {after['peak_mb']:7.0f} MB ({after['seconds']:5.1f} s)   "
                    f"ratio {after['peak_mb'] / before['peak_mb']:.2f}x   (imports {after['imports_mb']:.0f} MB)",
                    flush=True,
                )
                if what == "graph":
                    graph_mb[channels] = after["peak_mb"]
            path.unlink()
        if args.no_fit or 1 not in graph_mb:
            return
        half = Path(tmp) / "half.wav"
        write_track(half, args.minutes / 2, 1)
        half_mb = run("graph", "block-wise", half)["peak_mb"]
        slope = (graph_mb[1] - half_mb) / (args.minutes / 2)
        constant = graph_mb[1] - slope * args.minutes
        print(f"reference graph, mono, block-wise: {half_mb:.0f} MB at {args.minutes / 2:g} min, {graph_mb[1]:.0f} MB at {args.minutes:g} min")
        print(f"per-worker bound: {slope:.1f} MB per minute of audio + {constant:.0f} MB; "
              f"at the default maximum of 3 h: {constant + 180 * slope:,.0f} MB per worker, "
              f"{2 * (constant + 180 * slope) / 1024:.1f} GiB for two workers")


if __name__ == "__main__":
    main()
