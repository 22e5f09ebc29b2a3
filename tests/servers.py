"""Helpers for tests that start real local servers (emulators, dagster dev)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
def local_server(
    command: list[str], port: int, *, env: dict[str, str], what: str, timeout_s: float = 60, server_env: dict[str, str] | None = None
) -> Iterator[None]:
    """Run ``command`` (its own process group, ``server_env`` added to its environment) until the block ends, with ``env`` set while it serves."""
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **(server_env or {})}
    )
    try:
        if not wait_for_port(port, timeout_s):
            pytest.fail(f"{what} did not start within {timeout_s:.0f} s")
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            yield
    finally:
        stop(proc)


@contextmanager
def gcs_emulator(bucket: str) -> Iterator[None]:
    """The GCS emulator (in memory, with ``bucket``) on a free loopback port, ``STORAGE_EMULATOR_HOST`` set while it serves."""
    port = free_port()
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    command = [str(exe), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory", f"--default-bucket={bucket}", "-q"]
    with local_server(command, port, env={"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}, what="the GCS emulator"):
        yield


REPO = Path(__file__).resolve().parents[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


@contextmanager
def running_dagster_dev(klio_env: Path, target: tuple[str, ...] = ("-w", "workspace.yaml"), cwd: Path = REPO) -> Iterator[int]:
    """`dagster dev` (default: `-w workspace.yaml`) with this process's environment; yields its port once it serves."""
    port = free_port()
    log = open(klio_env / "dagster-dev.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "dev", *target, "-p", str(port), "-h", "127.0.0.1"],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # dagster dev ignores SIGTERM from a non-interactive shell otherwise
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                graphql(port, "{ version }")
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("dagster dev did not serve within 120 s:\n" + (klio_env / "dagster-dev.log").read_text()[-3000:])
        yield port
    finally:
        stop(proc)
        log.close()


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
