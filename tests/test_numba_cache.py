"""Numba's cache under concurrent first compilations (the demo's and the suite's segfaults).

Two races, each forced deterministically here (see klio_dagster/core/numba_cache.py):

- a gufunc's kernel cached by one process and its wrapper by another: the
  wrapper names the kernel by a per-process tag, so a later process calls a
  null pointer (numba issue #10128; what crashed ``beat_track`` in the demo);
- two processes compiling different signatures of one function: delays
  injected between numba's own steps make both read the empty index, A write
  its index, B its index and data, A's data last; the index then maps one
  signature to the other's code.
"""

from __future__ import annotations

import os
import shutil
import signal
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


GUFUNC = """
import numba

@numba.guvectorize(["void(int32[:], int32[:])", "void(int64[:], int64[:])"], "(n)->(n)", nopython=True, cache=True)
def cumulate(x, out):
    acc = 0
    for i in range(x.shape[0]):
        acc += x[i]
        out[i] = acc
"""
#: Compiling one more (uncached) function first moves this process's tags: what differs between two workers.
SHIFT = "import numba; numba.njit(lambda x: x + 1)(1)\n"
USE = "import numpy as np, gufuncs; print(gufuncs.cumulate(np.arange(5, dtype=np.int64)).tolist())"


def _python(code: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": f"{cwd}:{REPO}"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _mixed_gufunc_cache(tmp_path: Path) -> Path:
    """Kernels cached by one process, wrappers by another (each file's last writer differs)."""
    (tmp_path / "gufuncs.py").write_text(GUFUNC)
    for name, prefix in (("a", SHIFT), ("b", "")):
        assert _python(prefix + USE, tmp_path, tmp_path / name).returncode == 0
    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "a", mixed)
    for wrapper in (tmp_path / "b").rglob("guf-*"):
        shutil.copy(wrapper, mixed / wrapper.relative_to(tmp_path / "b"))
    return mixed


def test_unguarded_numba_crashes_on_a_gufunc_kernel_and_wrapper_from_two_processes(tmp_path):
    """The root cause of the demo's segfaults, shown: if this starts failing, numba fixed it and the guard can go."""
    done = _python(USE, tmp_path, _mixed_gufunc_cache(tmp_path))
    assert done.returncode == -signal.SIGSEGV, (done.returncode, done.stdout, done.stderr[-500:])


def test_guarded_gufunc_rebuilds_a_wrapper_of_another_process_and_repairs_the_cache(tmp_path):
    mixed = _mixed_gufunc_cache(tmp_path)
    guarded = _python("import klio_dagster.core\n" + USE, tmp_path, mixed)
    assert guarded.returncode == 0, guarded.stderr[-2000:]
    assert guarded.stdout.split() == ["[0,", "1,", "3,", "6,", "10]"]
    assert _python(USE, tmp_path, mixed).returncode == 0  # the stale wrapper was replaced
