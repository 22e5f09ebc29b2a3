"""What a killed or doubled `klio-dagster materialize` leaves behind, for any checkout of klio-dagster.

Runs against the checkout given by ``--checkout`` (default: this one), so that
the same script measures before and after a fix side by side:

- ``kills``: N times, a fresh instance, 10 tracks x 180 s, `materialize` of three
  features killed with SIGKILL once the first pair is recorded; then how long its
  Beam workers outlive it (up to 120 s), runs still STARTED, `_runs/` folders; then one
  `status` command and the same counts again; then a rerun, and pairs recorded twice.
- ``concurrent``: two identical `materialize` commands started together on 3
  tracks: pairs recorded twice.

    .venv/bin/python benchmarks/crash_debris.py --kills 5 [--checkout /path/to/old/checkout]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

FEATURES = ["downsample", "beat_tracking", "speechiness"]


def environment(root: Path, checkout: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLIO_", "DAGSTER_"))}
    env.update(KLIO_DATA=str(root / "data"), PYTHONPATH=str(checkout), NUMBA_CACHE_DIR=str(checkout / ".cache" / "numba"))
    return env


def command(env: dict[str, str], *args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from klio_dagster.cli import main; sys.exit(main())", *args]


def counts(env: dict[str, str]) -> tuple[Counter, int]:
    """(materialisations per pair, runs STARTED), read by a fresh interpreter against ``env``'s instance."""
    code = (
        "import json, os; from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus, RunsFilter\n"
        "i = DagsterInstance.get(); c = {}\n"
        f"for f in {FEATURES!r}:\n"
        "    for r in i.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(f)), limit=10000).records:\n"
        "        c[f + '/' + r.partition_key] = c.get(f + '/' + r.partition_key, 0) + 1\n"
        "print(json.dumps([c, len(i.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED])))]))"
    )
    env = {**env, "DAGSTER_HOME": str(Path(env["KLIO_DATA"]) / "dagster_home")}
    import json

    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    pairs, started = json.loads(out)
    return Counter(pairs), started


def setup(root: Path, checkout: Path, n_tracks: int, duration_s: float) -> dict[str, str]:
    env = environment(root, checkout)
    make = f"from klio_dagster.demo.catalogue import write_catalogue; write_catalogue({str(root / 'audio')!r}, {n_tracks}, {duration_s})"
    subprocess.run([sys.executable, "-c", make], env=env, check=True)
    subprocess.run(command(env, "ingest", str(root / "audio")), env=env, check=True, capture_output=True, cwd=root)
    return env


def kill_once(checkout: Path) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = setup(root, checkout, 10, 180.0)
        driver = subprocess.Popen(command(env, "materialize", *FEATURES, "--all-tracks"), env=env, cwd=root,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not counts(env)[0]:
            time.sleep(0.3)
        workers = [p for p in psutil.Process(driver.pid).children(recursive=True) if "sdk_worker_main" in " ".join(p.cmdline())]
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        killed = time.monotonic()
        _, alive = psutil.wait_procs(workers, timeout=120)
        runs_folder = root / "data" / "store" / "_runs"
        found = {
            "workers": len(workers),
            "workers_alive_after_120s": len(alive),
            "seconds_until_workers_gone": round(time.monotonic() - killed, 1),
            "runs_started": counts(env)[1],
            "runs_folders": len(list(runs_folder.iterdir())) if runs_folder.exists() else 0,
        }
        subprocess.run(command(env, "status", "demo-000-click"), env=env, cwd=root, capture_output=True)
        found["runs_started_after_a_command"] = counts(env)[1]
        found["runs_folders_after_a_command"] = len(list(runs_folder.iterdir())) if runs_folder.exists() else 0
        subprocess.run(command(env, "materialize", *FEATURES, "--all-tracks"), env=env, cwd=root, capture_output=True)
        pairs = counts(env)[0]
        found["pairs_missing_after_rerun"] = 10 * len(FEATURES) - len(pairs)
        found["pairs_recorded_twice"] = sum(n > 1 for n in pairs.values())
        for p in workers:  # leave nothing behind on this machine
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        return found


def concurrent(checkout: Path) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = setup(root, checkout, 3, 20.0)
        args = command(env, "materialize", *FEATURES, "--all-tracks")
        procs = [subprocess.Popen(args, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        codes = [p.wait() for p in procs]
        pairs = counts(env)[0]
        return {"pairs": len(pairs), "pairs_recorded_twice": sum(n > 1 for n in pairs.values()), "exit_codes": codes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    print(f"checkout {args.checkout}")
    for i in range(args.kills):
        print(f"kill {i + 1}: {kill_once(args.checkout)}", flush=True)
    print(f"two identical commands at once: {concurrent(args.checkout)}")


if __name__ == "__main__":
    main()
