"""Peak memory as the batch grows: 100 vs 1,000 tracks through `materialize`, side by side.

Each size runs in a fresh process (the audio is generated beforehand, by the
parent); the peak RSS of that process (CLI, planning, Dagster run, recording)
and of the Beam workers are reported separately.

    python benchmarks/memory.py --sizes 100 1000 --duration 5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time

from common import fresh_environment

EVERY = ["downsample", "beat_tracking", "energy", "speechiness", "instrumentalness", "spectrogram"]


def measure_one(n: int, audio: str) -> dict:
    """Ingest and materialise the files in ``audio`` in this (fresh) process."""
    from klio_dagster.cli import main

    with fresh_environment(f"memory-{n}"):
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["ingest", audio, "--json"]) == 0
        start = time.perf_counter()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["materialize", *EVERY, "--all-tracks", "--json"])
        seconds = time.perf_counter() - start
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert code == 0 and len(result["computed"]) == n * len(EVERY), result["failed"][:3]
    return {
        "tracks": n,
        "seconds": round(seconds, 1),
        "driver_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "worker_peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.audio)))
        return
    from klio_dagster.demo.catalogue import write_catalogue

    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as audio:
            write_catalogue(audio, n, args.duration, prefix="mem")  # generated outside the measured process
            out = subprocess.run(
                [sys.executable, __file__, "--one", str(n), "--audio", audio],
                capture_output=True, text=True, check=True,
            )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in rows:
        print(f"{r['tracks']:6d} tracks x {args.duration:.0f} s: {r['seconds']:7.1f} s  driver peak {r['driver_peak_mb']:7.1f} MB  "
              f"worker peak {r['worker_peak_mb']:7.1f} MB")
    first, last = rows[0], rows[-1]
    print(f"memory ratio {last['tracks']} vs {first['tracks']} tracks: driver {last['driver_peak_mb'] / first['driver_peak_mb']:.2f}x, "
          f"workers {last['worker_peak_mb'] / first['worker_peak_mb']:.2f}x (flat = 1.0x)")


if __name__ == "__main__":
    main()
