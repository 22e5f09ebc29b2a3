"""B1 and B2: whole-graph throughput on the same demo-length tracks, side by side.

B1: klio-dagster's batched `materialize` (one run, one Beam pipeline on all
cores) against a plain hand-written `multiprocessing.Pool` script doing the
same librosa work and writing the same outputs. The script runs twice: as
written plainly (the goal's baseline), and tuned with one BLAS thread per
process as klio-dagster's workers have (what shows klio-dagster's own
overhead).
B2: the same tracks through one Dagster run per track (the naive way) against
the batched path.

    python benchmarks/throughput.py --tracks 100 --duration 30
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import librosa  # noqa: F401 - imported before forking, as a hand-written script would
from common import fresh_environment, klio, timed
from threadpoolctl import threadpool_limits

from examples.reference_graph import (
    SAMPLE_RATE,
    beat_tracking,
    downsample,
    energy,
    instrumentalness,
    mel_power,
    pulse_and_pauses,
    spectrogram,
    speechiness,
)
from klio_dagster import Audio
from klio_dagster.cli import main as cli_main
from klio_dagster.core.audio import decode
from klio_dagster.core.formats import get_format, render_png
from klio_dagster.demo.catalogue import write_catalogue

OUT: Path


def baseline_track(path: str) -> None:
    """The reference graph for one track, by hand: decode, compute, write."""
    track = Path(path).stem
    y, sr = decode(Path(path).read_bytes(), sr=SAMPLE_RATE)
    ds = downsample.fn(Audio(y, sr)).value
    (OUT / f"{track}.downsample.wav").write_bytes(get_format("audio").encode(ds))
    mel = mel_power.fn(ds)
    beats = beat_tracking.fn(ds, mel).value
    beats.to_parquet(OUT / f"{track}.beats.parquet")
    energy.fn(ds, beats).value.to_parquet(OUT / f"{track}.energy.parquet")
    parts = pulse_and_pauses.fn(ds, mel)
    (OUT / f"{track}.speechiness.json").write_text(json.dumps(speechiness.fn(parts).value))
    (OUT / f"{track}.instrumentalness.json").write_text(json.dumps(instrumentalness.fn(parts).value))
    (OUT / f"{track}.spectrogram.png").write_bytes(render_png(spectrogram.fn(ds, mel).value))


def _init(out: str, tuned: bool) -> None:
    global OUT
    OUT = Path(out)
    if tuned:
        threadpool_limits(limits=1)


def run_baseline(paths: list[str], out: str, workers: int, tuned: bool) -> None:
    with multiprocessing.Pool(workers, _init, (out, tuned)) as pool:
        pool.map(baseline_track, paths, chunksize=1)


def fixed_costs(outputs: list[Path], start: float, end: float) -> tuple[float, float]:
    """Seconds from the command's start to its first output file, and from its last output file to its end.

    The first output of a track is written once it is decoded and downsampled
    (~0.1 s of work), so the first figure is the start-up before any track
    computes; the second is what a batch costs after its last result.
    """
    times = [f.stat().st_mtime for f in outputs]
    return min(times) - start, end - max(times)


def time_baseline_command(audio_dir: str, workers: int, tuned: bool) -> tuple[float, tuple[float, float]]:
    """The Pool script run as a command, like `klio-dagster materialize` (start-up included in both)."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, __file__, "--pool-baseline", audio_dir, "--out", out, "--workers", str(workers)]
        start = time.time()
        subprocess.run(command + (["--tuned"] if tuned else []), check=True)
        end = time.time()
        return end - start, fixed_costs(list(Path(out).iterdir()), start, end)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracks", type=int, default=100)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--audio", help="reuse a catalogue written earlier by this script (same --tracks and --duration)")
    parser.add_argument("--pool-baseline", metavar="AUDIO_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--tuned", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pool_baseline:
        run_baseline(sorted(str(p) for p in Path(args.pool_baseline).iterdir()), args.out, args.workers, args.tuned)
        return
    t: dict[str, float] = {}
    fixed: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        audio_dir = args.audio or tmp
        catalogue = write_catalogue(audio_dir, args.tracks, args.duration, prefix="bench", overwrite=False)
        every = ["downsample", "beat_tracking", "energy", "speechiness", "instrumentalness", "spectrogram"]

        t["pool"], fixed["pool"] = time_baseline_command(audio_dir, args.workers, tuned=False)
        t["pool_tuned"], fixed["pool_tuned"] = time_baseline_command(audio_dir, args.workers, tuned=True)

        with fresh_environment("batched") as root:
            klio("ingest", audio_dir)
            start = time.time()
            batched = klio("materialize", *every, "--all-tracks")
            end = time.time()
            t["batched"], fixed["batched"] = end - start, fixed_costs(
                [f for name in every for f in (root / "store" / name).iterdir()], start, end
            )
            assert not batched["failed"], batched["failed"][:3]
            assert len(batched["computed"]) == len(every) * args.tracks and len(batched["run_ids"]) == 1

        if not args.skip_naive:
            with fresh_environment("naive-cli"):
                klio("ingest", audio_dir)
                with timed(t, "naive_cli"):
                    for c in catalogue:
                        klio("materialize", *every, "--tracks", c.track_id)
            with fresh_environment("naive-in-process"):
                klio("ingest", audio_dir)
                with timed(t, "naive_in_process"), contextlib.redirect_stdout(io.StringIO()):
                    for c in catalogue:
                        assert cli_main(["materialize", *every, "--tracks", c.track_id, "--json"]) == 0

    n, d = args.tracks, args.duration
    print(f"{n} tracks x {d:.0f} s, {args.workers} cores")
    for key, label in (
        ("pool", f"Pool({args.workers}) script, plain"),
        ("pool_tuned", f"Pool({args.workers}) script, 1 BLAS thread"),
        ("batched", "klio-dagster batched"),
    ):
        first, last = fixed[key]
        print(f"B1 {label:32s} {t[key]:7.1f} s  {n / t[key]:6.2f} tracks/s  "
              f"fixed: {first:4.1f} s to the first output, {last:4.1f} s after the last")
    print(f"B1 throughput ratio (klio / plain Pool): {t['pool'] / t['batched']:.2f}x  (goal >= 0.9x)")
    print(f"B1 throughput ratio (klio / tuned Pool): {t['pool_tuned'] / t['batched']:.2f}x  (klio-dagster's own overhead)")
    if "naive_cli" in t:
        for key, label in (("naive_cli", "a CLI call per track"), ("naive_in_process", "a run per track, one process")):
            print(f"B2 {label:32s} {t[key]:7.1f} s  {n / t[key]:6.2f} tracks/s  "
                  f"batching speed-up {t[key] / t['batched']:.1f}x  (goal >= 10x)")


if __name__ == "__main__":
    main()
