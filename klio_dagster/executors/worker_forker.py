"""Local Beam SDK workers forked from one process that has already imported what they need.

The local runner starts each SDK worker with a shell command and waits for it to end. Started
as ``python -m apache_beam.runners.worker.sdk_worker_main``, every worker is a new interpreter
that imports Beam and the feature code (1.5-2 s) while the batch waits. Here the command is
:mod:`~klio_dagster.executors.fork_client`, which asks a *forker* for a worker: a process that
imports those once (:data:`WARM_MODULES` and the graph's modules), started before the pipeline
is built (by ``klio-dagster materialize`` before it even loads the code location), and that
forks a worker per request in milliseconds.

A forked worker runs Beam's own ``sdk_worker_main`` with its client's environment and ends
without the interpreter's teardown (0.8 s with numba and LLVM loaded, paid by each worker in
turn at the end of every batch). The forker ends with the process that started it, even
killed with ``SIGKILL``; a worker ends when its client does.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from klio_dagster.executors.processes import ProcessIdentity, kill_processes

#: Imported by the forker for every worker: Beam's worker and klio-dagster's track computation.
#: Not librosa's numba-compiled modules (``librosa.beat`` alone takes 3-7 s to load from numba's
#: cache, in LLVM): a worker that needs them imports them on its first track, in parallel with
#: the other workers, where one forker would import them one after the other before any worker starts.
WARM_MODULES = ("apache_beam.runners.worker.sdk_worker_main", "klio_dagster.executors.beam")
#: Set by whoever started a forker for the runs of this process (``klio-dagster materialize``).
FORKER_VARIABLE = "KLIO_WORKER_FORKER"
_CLIENT = Path(__file__).with_name("fork_client.py")
_POLL_S = 0.2


@dataclass
class WorkerForker:
    """A running forker, as the process that started it sees it (``started``: this handle started it)."""

    process: psutil.Process
    socket_path: str
    started: subprocess.Popen | None = None

    @classmethod
    def start(cls, modules: Sequence[str] = ()) -> WorkerForker:
        """Start a forker that imports :data:`WARM_MODULES` and ``modules`` (the graph's), in the background."""
        folder = tempfile.mkdtemp(prefix="klio-forker-")  # 0700: only this user's clients connect
        path = os.path.join(folder, "socket")
        command = [sys.executable, "-m", __name__, path, ProcessIdentity.current().token(), *modules]
        popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, close_fds=True)
        return cls(psutil.Process(popen.pid), path, popen)

    @classmethod
    def of_this_process(cls) -> WorkerForker | None:
        """The forker named by :data:`FORKER_VARIABLE`, if this process started it and it still runs."""
        pid, _, path = os.environ.get(FORKER_VARIABLE, "").partition(":")
        try:
            forker = cls(psutil.Process(int(pid)), path)
            return forker if forker.process.ppid() == os.getpid() and forker.ended() is None else None
        except (ValueError, psutil.NoSuchProcess):
            return None

    @property
    def reference(self) -> str:
        """``PID:SOCKET``, for :data:`FORKER_VARIABLE`."""
        return f"{self.process.pid}:{self.socket_path}"

    def worker_command(self) -> str:
        """The shell command that gets one forked worker (the local runner's worker command)."""
        quoted = " ".join(shlex.quote(str(p)) for p in (sys.executable, "-I", "-S", _CLIENT, self.socket_path))
        return f"exec {quoted}"

    def workers(self) -> list[psutil.Process]:
        """The workers forked so far that have not ended."""
        try:
            return self.process.children()
        except psutil.NoSuchProcess:
            return []

    def ended(self) -> int | None:
        """The forker's exit status if it has ended (it fails if a module cannot be imported), else ``None``."""
        if self.started is not None:
            return self.started.poll()
        try:
            return None if self.process.status() != psutil.STATUS_ZOMBIE else 1
        except psutil.NoSuchProcess:
            return 1

    def stop(self) -> None:
        """Kill the forker and its workers; remove its socket."""
        kill_processes([*self.workers(), self.process])
        if self.started is not None:
            self.started.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
            os.rmdir(os.path.dirname(self.socket_path))


@contextlib.contextmanager
def forker_for_runs() -> Iterator[WorkerForker]:
    """A forker started now, for the local Beam batches of this process's runs (:data:`FORKER_VARIABLE`)."""
    forker = WorkerForker.start()
    before = os.environ.get(FORKER_VARIABLE)
    os.environ[FORKER_VARIABLE] = forker.reference
    try:
        yield forker
    finally:
        if before is None:
            os.environ.pop(FORKER_VARIABLE, None)
        else:
            os.environ[FORKER_VARIABLE] = before
        forker.stop()


def _run_worker(env: dict[str, str]) -> None:
    """In a forked child: become the SDK worker Beam asked for, then end at once."""
    status = 0
    try:
        os.environ.clear()
        os.environ.update(env)
        for root in reversed([p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]):
            if root not in sys.path:
                sys.path.insert(0, root)  # feature modules of a location loaded from a folder
        from apache_beam.runners.worker import sdk_worker_main

        sdk_worker_main.main(sys.argv)
    except BaseException:  # noqa: BLE001 - reported, then the child's status says it failed
        traceback.print_exc()
        status = 1
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(status)


def _serve(path: str, driver: ProcessIdentity, modules: Sequence[str]) -> None:
    """Listen on ``path`` at once, import, then fork a worker per client until ``driver`` ends."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)  # clients that connect while the modules are imported wait in the backlog
    for name in (*WARM_MODULES, *modules):
        importlib.import_module(name)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    workers: dict[socket.socket, int] = {}
    while driver.is_alive():
        for key, _ in selector.select(_POLL_S):
            if key.fileobj is listener:
                conn, _ = listener.accept()
                request = json.loads(conn.makefile("r").readline() or "{}")
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    for other in workers:
                        other.close()
                    _run_worker(request.get("env", {}))
                workers[conn] = pid
                selector.register(conn, selectors.EVENT_READ)
            else:  # a client's connection closed: Beam stopped (or killed) it, so its worker goes too
                conn = key.fileobj
                with contextlib.suppress(ProcessLookupError):
                    os.kill(workers[conn], signal.SIGKILL)
        _reap(workers, selector)
    for pid in workers.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _reap(workers: dict[socket.socket, int], selector: selectors.BaseSelector) -> None:
    """Tell each ended worker's client its status (128 + signal if killed) and close the connection."""
    for conn, pid in list(workers.items()):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):
                conn.sendall(f"exit {code if code >= 0 else 128 - code}\n".encode())
            selector.unregister(conn)
            conn.close()
            del workers[conn]


if __name__ == "__main__":  # the forker: SOCKET DRIVER_TOKEN [MODULE ...]
    socket_path, token, *graph_modules = sys.argv[1:]
    identity = ProcessIdentity.from_token(token)
    if identity is None:
        sys.exit(f"not a process token: {token!r}")
    _serve(socket_path, identity, graph_modules)
