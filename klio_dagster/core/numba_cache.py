"""Numba's on-disk cache, made safe for processes that compile at the same time.

librosa's functions are compiled by numba with ``cache=True``: the first
process to call one writes the machine code into ``NUMBA_CACHE_DIR`` and
later processes load it. Numba 0.68 updates a function's cache without any
lock: ``IndexDataCacheFile.save`` reads the index, picks the first free data
file name (``f.1.nbc``), writes the index, then the data. Two processes that
compile *different* signatures of one function at the same moment (two Beam
workers on their first tracks, a CLI run beside a test run) both pick
``f.1.nbc``; when one's index and the other's data file land last, the index
maps a signature to another signature's machine code. Every later process
loads it, and a call returns garbage or crashes with a segmentation fault
(``beat_track`` did). tests/test_numba_cache.py reproduces the interleaving.

:func:`make_numba_cache_process_safe` serialises the read-modify-write of
each index with an exclusive ``flock`` on a lock file beside it, and takes a
shared lock to read, so concurrent processes keep sharing one cache and
none can corrupt it. This wraps a private numba class (numba has no public
hook for it); the test fails loudly if an upgrade moves it.
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


def make_numba_cache_process_safe() -> bool:
    """Guard numba's cache index against concurrent writers; idempotent.

    Returns ``False`` when numba is not installed (nothing to guard).
    """
    try:
        from numba.core.caching import IndexDataCacheFile
    except ImportError:
        return False
    if not getattr(IndexDataCacheFile, _MARK, False):
        IndexDataCacheFile.save = _locked(IndexDataCacheFile.save, fcntl.LOCK_EX)
        IndexDataCacheFile.load = _locked(IndexDataCacheFile.load, fcntl.LOCK_SH)
        setattr(IndexDataCacheFile, _MARK, True)
    return True
