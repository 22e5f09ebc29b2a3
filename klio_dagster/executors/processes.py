"""Which process owns a piece of work, whether it is still alive, and worker processes that die with their driver.

A process is identified by host, PID and start time, so a PID reused by a
later process is never taken for the owner.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class ProcessIdentity:
    """One process on one host: ``host``, ``pid`` and its start time (``started``, ms since the epoch)."""

    host: str
    pid: int
    started: int

    @classmethod
    def current(cls) -> ProcessIdentity:
        return cls(socket.gethostname(), os.getpid(), _start_time_ms(os.getpid()) or 0)

    def token(self) -> str:
        """``host.pid.started``: usable in tags and folder names (host names have no spaces or slashes)."""
        return f"{self.host}.{self.pid}.{self.started}"

    @classmethod
    def from_token(cls, token: str) -> ProcessIdentity | None:
        host, _, rest = token.rpartition(".")
        host, _, pid = host.rpartition(".")
        try:
            return cls(host, int(pid), int(rest)) if host else None
        except ValueError:
            return None

    @property
    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()

    def is_alive(self) -> bool:
        """Whether this process still runs; only answerable on its own host (elsewhere: assumed alive)."""
        if not self.on_this_host:
            return True
        started = _start_time_ms(self.pid)
        return started is not None and started == self.started


def _start_time_ms(pid: int) -> int | None:
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return int(process.create_time() * 1000)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def exit_with(driver: ProcessIdentity, poll_s: float = 0.5) -> None:
    """Have this process killed within ``poll_s`` of ``driver`` ending (at once if it already has).

    For worker processes started by a driver that may be killed with
    ``SIGKILL``, which gives it no chance to stop them (Beam starts its local
    workers through a shell, so the driver is not their parent). The watching
    is done by a small separate process, because a worker deep in native code
    that holds the GIL (a long numba call) runs no Python thread for minutes.
    """
    subprocess.Popen(
        [sys.executable, "-m", __name__, driver.token(), str(os.getpid()), str(poll_s)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        close_fds=True,
    )


def _watch(driver: ProcessIdentity, worker: int, poll_s: float) -> None:
    """Kill ``worker`` when ``driver`` ends; return when either has ended."""
    watched = psutil.Process(worker)
    while watched.is_running() and watched.status() != psutil.STATUS_ZOMBIE:
        if not driver.is_alive():
            watched.kill()
            return
        time.sleep(poll_s)


def kill_processes(processes: list[psutil.Process], timeout_s: float = 10.0) -> None:
    """``SIGKILL`` each process and wait for it to go."""
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(processes, timeout=timeout_s)


if __name__ == "__main__":  # the watcher started by exit_with: DRIVER_TOKEN WORKER_PID POLL_S
    token, worker_pid, poll = sys.argv[1:4]
    identity = ProcessIdentity.from_token(token)
    if identity is not None:
        try:
            _watch(identity, int(worker_pid), float(poll))
        except psutil.NoSuchProcess:
            pass
