"""Numba's on-disk cache, made safe for processes that compile at the same time.

librosa's functions are compiled by numba with ``cache=True``: the first
process to need one writes the machine code into ``NUMBA_CACHE_DIR`` and
later processes load it. Two processes compiling at the same moment (two
Beam workers on their first tracks, a CLI run beside a test run) can leave a
cache that crashes every later process, in two ways (numba 0.68):

1. **gufunc kernel and wrapper from different processes** (numba issue
   #10128; what crashed the demo's workers in ``beat_track``). A
   ``@guvectorize(cache=True)`` function has two cache entries: its kernel
   and the wrapper that calls it, which names the kernel by a tag taken from
   a per-process counter (``__dp_backtrackB4v174`` in one process, ``v175``
   in another). When both processes compile, each writes both entries, and
   the last writer of each file can differ: a later process loads a wrapper
   that refers to a kernel symbol that does not exist and calls a null
   pointer. Here a wrapper loaded from the cache is used only if it defines
   the entry point of the kernel this process has (numba returns a null
   pointer for a missing symbol); otherwise it is rebuilt for this kernel and
   saved over the stale entry, which also repairs a cache corrupted earlier.
2. **one data file for two signatures.** ``IndexDataCacheFile.save`` reads
   the index, takes the first free data file name, writes the index, then the
   data, with no lock. Two processes compiling *different* signatures of one
   function both take ``f.1.nbc``, and the index can end up mapping one
   signature to the other's code. Here each index's read-modify-write holds
   an exclusive ``flock`` on a file beside it (reads a shared one).

tests/test_numba_cache.py forces both interleavings and shows the wrong
result or the crash without the guard. This patches private numba names (no
public hook exists); the tests fail loudly if an upgrade moves them.
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_MARK = "_klio_process_safe"


@contextmanager
def _index_lock(index_path: str, mode: int) -> Iterator[None]:
    try:
        fd = os.open(f"{index_path}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # a read-only cache folder: numba writes nothing there, nothing to guard
        yield
        return
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _locked(method: Callable[..., Any], mode: int) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(self: Any, *args: Any) -> Any:
        with _index_lock(self._index_path, mode):
            return method(self, *args)

    return locked


def _checked(compile_wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """``_GufuncWrapper._compile_wrapper`` that never returns a wrapper naming another process's kernel."""

    @functools.wraps(compile_wrapper)
    def compile_checked(self: Any, wrapper_name: str) -> Any:
        library = compile_wrapper(self, wrapper_name)
        if self.is_parfors or library.get_pointer_to_function(wrapper_name):
            return library
        library = self.context.codegen().create_library(str(self))
        library.enable_object_caching()
        self._build_wrapper(library, wrapper_name)
        self.cache.save_overload(self.cres.signature, library)
        return library

    return compile_checked


def make_numba_cache_process_safe() -> bool:
    """Guard numba's cache against concurrent compiling processes; idempotent.

    Returns ``False`` when numba is not installed (nothing to guard).
    """
    try:
        from numba.core.caching import IndexDataCacheFile
        from numba.np.ufunc import wrappers
    except ImportError:
        return False
    if not getattr(IndexDataCacheFile, _MARK, False):
        IndexDataCacheFile.save = _locked(IndexDataCacheFile.save, fcntl.LOCK_EX)
        IndexDataCacheFile.load = _locked(IndexDataCacheFile.load, fcntl.LOCK_SH)
        wrappers._GufuncWrapper._compile_wrapper = _checked(wrappers._GufuncWrapper._compile_wrapper)
        setattr(IndexDataCacheFile, _MARK, True)
    return True
