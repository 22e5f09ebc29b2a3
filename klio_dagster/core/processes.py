"""Which process owns a piece of work, whether it is still alive, and worker processes that die with their driver.

A process is identified by host, PID and start time, so a PID reused by a
later process is never taken for the owner.
"""

from __future__ import annotations

import os
import socket
import threading
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
    """End this process within ``poll_s`` of ``driver`` ending (at once if it already has).

    For worker processes started by a driver that may be killed with
    ``SIGKILL``, which gives it no chance to stop them (Beam starts its local
    workers through a shell, so the driver is not their parent).
    """

    def watch() -> None:
        while driver.is_alive():
            threading.Event().wait(poll_s)
        os._exit(70)  # EX_SOFTWARE: the driver is gone, nobody will read this worker's results

    threading.Thread(target=watch, name="klio-exit-with-parent", daemon=True).start()


def child_processes(command_part: str) -> list[psutil.Process]:
    """This process's descendants whose command line contains ``command_part``."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if any(command_part in arg for arg in child.cmdline()):
                found.append(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def kill_processes(processes: list[psutil.Process], timeout_s: float = 10.0) -> None:
    """``SIGKILL`` each process and wait for it to go."""
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(processes, timeout=timeout_s)
