"""The worker forker: local Beam workers forked from a warm process, and what happens when a piece of it fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from klio_dagster import FeatureGraph, LocalFeatureStore, TrackTask
from klio_dagster.executors.beam import BeamExecutor
from klio_dagster.executors.worker_forker import FORKER_VARIABLE, WorkerForker, forker_for_runs

pytestmark = [pytest.mark.integration, pytest.mark.beam]

BREAKABLE = '''
import os
from klio_dagster import feature

if os.environ.get("KLIO_TEST_BREAK_IMPORT"):
    raise ImportError("broken on purpose")

@feature(code_version="1", output="json")
def echo(track_id: str) -> dict:
    return {"track": track_id, "pid": os.getpid()}
'''


@pytest.fixture
def breakable(tmp_path, monkeypatch):
    """A feature module the workers' forker imports, and that breaks on import when asked to."""
    (tmp_path / "breakable_features.py").write_text(BREAKABLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import breakable_features

    yield FeatureGraph([breakable_features.echo])
    sys.modules.pop("breakable_features", None)


def forker_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "klio_dagster.executors.worker_forker" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _client(forker: WorkerForker, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(forker.worker_command(), shell=True, env=env)


def test_a_batch_runs_on_forked_workers_that_are_the_forkers_children(breakable, tmp_path):
    store = LocalFeatureStore(tmp_path / "store")
    with forker_for_runs() as forker:
        tasks = [TrackTask(f"t{i}", ("echo",)) for i in range(8)]
        results = [r for batch in BeamExecutor(num_workers=2).run(tasks, breakable, store) for r in batch]
        workers = {json.loads(store.read_bytes(breakable["echo"].object_name(r.track_id)))["pid"] for r in results}
        assert len(results) == 8 and all(r.ok for r in results)
        assert workers and all(psutil.Process(pid).ppid() == forker.process.pid for pid in workers if psutil.pid_exists(pid))
        assert forker.ended() is None  # this process's forker serves its next batch
    assert forker.ended() is not None and FORKER_VARIABLE not in os.environ


def test_a_forker_that_cannot_import_the_features_fails_the_batch_naming_it(breakable, tmp_path, monkeypatch):
    monkeypatch.setenv("KLIO_TEST_BREAK_IMPORT", "1")  # the forker (started now) fails where this process did not
    start = time.monotonic()
    with pytest.raises(Exception, match="worker forker"):
        for _ in BeamExecutor(num_workers=2).run([TrackTask("t", ("echo",))], breakable, LocalFeatureStore(tmp_path / "s")):
            pass
    assert time.monotonic() - start < 120  # failed, not hung waiting for workers
    assert forker_processes() == []


def test_a_workers_failure_reaches_its_client_and_a_killed_client_takes_its_worker(capfd):
    forker = WorkerForker.start()
    try:
        failed = _client(forker, {**os.environ, "CONTROL_API_SERVICE_DESCRIPTOR": "not a descriptor"})
        assert failed.wait(120) == 1  # the status, to Beam; the traceback, on the stderr the forker shares with its starter
        assert 'has no field named "not"' in capfd.readouterr().err
        # A worker waiting for a control service that never answers, then its client killed (as Beam kills it).
        waiting = _client(forker, {**os.environ, "CONTROL_API_SERVICE_DESCRIPTOR": 'url: "127.0.0.1:9"', "PIPELINE_OPTIONS": "{}"})
        deadline = time.monotonic() + 60
        while not forker.workers() and time.monotonic() < deadline:
            time.sleep(0.1)
        (worker,) = forker.workers()
        waiting.kill()
        waiting.wait()
        psutil.wait_procs([worker], timeout=10)
        assert not worker.is_running()
    finally:
        forker.stop()
    assert not Path(forker.socket_path).exists()


def test_the_forker_ends_with_the_process_that_started_it(tmp_path):
    script = "from klio_dagster.executors.worker_forker import WorkerForker; import time; print(WorkerForker.start().process.pid, flush=True); time.sleep(600)"
    starter = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    forker = psutil.Process(int(starter.stdout.readline()))
    starter.kill()  # kill -9: no chance to stop its forker
    starter.wait()
    psutil.wait_procs([forker], timeout=30)
    assert not forker.is_running() or forker.status() == psutil.STATUS_ZOMBIE
