"""Numba's cache under concurrent first compilations (the demo's and the suite's segfaults).

Two processes compile different signatures of one cached function at once.
Delays injected between numba's own steps force the interleaving that a busy
machine produces by chance: both read the empty index, A writes its index,
B writes its index and data, A's data lands last. A third process then loads
the cache and calls both signatures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]

JITTED = """
import numba

@numba.njit(cache=True)
def affine(x):
    return x * 2 + 1
"""

RACE = """
import multiprocessing as mp
import sys
import time


def compile_first(barrier, value, index_delay_s, data_delay_s, guarded):
    import numba.core.caching as caching

    if guarded:
        from klio_dagster.core.numba_cache import make_numba_cache_process_safe

        assert make_numba_cache_process_safe()
    cls = caching.IndexDataCacheFile
    load, save_index, save_data = cls._load_index, cls._save_index, cls._save_data

    def slow_load(self):
        index = load(self)
        time.sleep(0.5)  # both processes have read the index before either writes
        return index

    def slow_index(self, overloads):
        time.sleep(index_delay_s)
        return save_index(self, overloads)

    def slow_data(self, name, data):
        time.sleep(data_delay_s)
        return save_data(self, name, data)

    cls._load_index, cls._save_index, cls._save_data = slow_load, slow_index, slow_data
    import jitted

    barrier.wait()
    jitted.affine(value)


if __name__ == "__main__":
    guarded = sys.argv[1] == "guarded"
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=compile_first, args=(barrier, 3, 0.0, 0.6, guarded)),
        ctx.Process(target=compile_first, args=(barrier, 2.5, 0.3, 0.0, guarded)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, p.exitcode
"""

CHECK = "import jitted; print(jitted.affine(3), jitted.affine(2.5))"


def _race_then_load(tmp_path: Path, mode: str) -> str:
    (tmp_path / "jitted.py").write_text(JITTED)
    (tmp_path / "race.py").write_text(textwrap.dedent(RACE))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": f"{tmp_path}:{REPO}"}
    subprocess.run([sys.executable, "race.py", mode], cwd=tmp_path, env=env, check=True, timeout=120)
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_unguarded_numba_maps_a_signature_to_another_signatures_code(tmp_path):
    """The root cause, shown: if this starts failing, numba fixed its cache and the guard can go."""
    assert _race_then_load(tmp_path, "unguarded") == ["7", "5"]  # affine(2.5) ran the int64 code


def test_guarded_cache_survives_concurrent_first_compilations(tmp_path):
    assert _race_then_load(tmp_path, "guarded") == ["7", "6.0"]


def test_importing_the_core_guards_the_cache():
    code = "import klio_dagster.core, numba.core.caching as c; print(c.IndexDataCacheFile._klio_process_safe)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.stdout.strip() == "True", done.stderr
