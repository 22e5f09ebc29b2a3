"""Helpers for tests that start real local servers (emulators, dagster dev)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float) -> bool:
    """True once something accepts connections on 127.0.0.1:``port``."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


@contextmanager
def local_server(command: list[str], port: int, *, env: dict[str, str], what: str, timeout_s: float = 60) -> Iterator[None]:
    """Run ``command`` (its own process group) until the block ends, with ``env`` set while it serves."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if not wait_for_port(port, timeout_s):
            pytest.fail(f"{what} did not start within {timeout_s:.0f} s")
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            yield
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM the server's process group; SIGKILL it if it has not exited after ``grace_s``.

    Emulators took over 20 s to honour SIGTERM under two busy loops (the JVM of the Pub/Sub
    emulator shuts down slowly): the test is over, so a slow exit must not fail it.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(grace_s)
