"""A run process stopped mid-pipeline (cancelled: SIGINT, as Dagster terminates a run; or kill -9) exits, and its local Beam workers end with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.beam]

REPO = Path(__file__).resolve().parents[1]

RUN = """
import sys, time
from klio_dagster import FeatureGraph, LocalFeatureStore, TrackTask, feature
from klio_dagster.executors.beam import BeamExecutor

@feature(code_version="1", output="json")
def slow(track_id: str) -> dict:
    time.sleep(1.0)
    return {"track": track_id}

graph = FeatureGraph([slow])
tasks = [TrackTask(f"t{i}", ("slow",)) for i in range(200)]
for results in BeamExecutor(num_workers=2).run(tasks, graph, LocalFeatureStore(sys.argv[1])):
    print("recorded", results[0].track_id, flush=True)
"""


def _workers_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in environ and b"klio_dagster.executors.worker_forker" in cmdline:  # the forker, its workers
                found.append(int(entry))
    return found


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["interrupted (a cancelled run)", "kill -9"])
def test_stopping_the_run_process_mid_pipeline_ends_it_and_its_workers(tmp_path, how):
    (tmp_path / "run.py").write_text(textwrap.dedent(RUN))
    marker = f"KLIO_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, "KLIO_TEST_RUN": marker.split("=")[1], "PYTHONPATH": str(REPO)}
    run = subprocess.Popen([sys.executable, "run.py", str(tmp_path / "store")], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and "recorded" not in (run.stdout.readline() or ""):
            pass
        workers = _workers_with(marker)
        assert workers, "the pipeline started no worker processes"
        run.send_signal(how)  # the worst moment: tracks in flight
        try:
            run.wait(180)  # seconds idle, a minute and more under two busy loops: a bound, not a timing
        except subprocess.TimeoutExpired:
            pytest.fail("the run process did not exit within 180 s of being stopped")
        deadline = time.time() + 120
        while _workers_with(marker) and time.time() < deadline:
            time.sleep(0.5)
        left = _workers_with(marker)
        assert not left, f"workers outlived the killed run: {left}"
    finally:
        for pid in _workers_with(marker):
            os.kill(pid, signal.SIGKILL)
        if run.poll() is None:
            run.kill()
