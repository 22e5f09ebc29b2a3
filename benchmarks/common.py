"""Helpers shared by the benchmarks: a fresh instance/store per measurement, timing, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))
BIN = Path(sys.executable).parent


@contextmanager
def fresh_environment(label: str):
    """Point DAGSTER_HOME, KLIO_STORE and KLIO_QUEUE at a new temporary folder."""
    with tempfile.TemporaryDirectory(prefix=f"klio-bench-{label}-") as tmp:
        root = Path(tmp)
        env = {}
        for name, sub in (("DAGSTER_HOME", "home"), ("KLIO_STORE", "store"), ("KLIO_QUEUE", "queue"), ("KLIO_DATA", "data")):
            (root / sub).mkdir()
            env[name] = str(root / sub)
        (root / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield root
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def klio(*args: str) -> dict:
    """Run the klio-dagster command in a subprocess (as a user would) and return its JSON."""
    out = subprocess.run([str(BIN / "klio-dagster"), *args, "--json"], capture_output=True, text=True, env=os.environ)
    if out.returncode not in (0, 1):
        raise RuntimeError(f"klio-dagster {' '.join(args[:3])} failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextmanager
def timed(results: dict, key: str):
    start = time.perf_counter()
    yield
    results[key] = time.perf_counter() - start
