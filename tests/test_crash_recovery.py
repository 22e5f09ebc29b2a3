"""Crashes: killed commands, dead workers and concurrent commands leave no debris and compute nothing twice.

Real processes throughout: the CLI in a subprocess killed with SIGKILL, Beam's
local SDK workers, a worker killing itself, two commands started together.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus, RunsFilter
from probe_features import crash_graph

from klio_dagster.core.execution import TrackTask
from klio_dagster.demo.catalogue import write_catalogue
from klio_dagster.errors import WorkerLost
from klio_dagster.executors.beam import BeamExecutor
from klio_dagster.orchestration.instance import open_instance
from klio_dagster.storage.registry import record_sources
from klio_dagster.storage.stores import RUNS_FOLDER, LocalFeatureStore

pytestmark = pytest.mark.integration

CLI = [str(Path(sys.executable).parent / "klio-dagster")]
FEATURES = ["downsample", "beat_tracking", "speechiness"]


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def materializations(instance: DagsterInstance, features=FEATURES) -> Counter:
    counts: Counter = Counter()
    for feature in features:
        for record in instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(feature)), limit=10_000).records:
            counts[(feature, record.partition_key)] += 1
    return counts


@pytest.fixture
def tracks(klio_env) -> list[str]:
    catalogue = write_catalogue(klio_env / "data" / "media", n_tracks=10, duration_s=30.0, prefix="k")
    done = subprocess.run([*CLI, "ingest", str(klio_env / "data" / "media")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [t.track_id for t in catalogue]


def workers_of(pid: int) -> list[psutil.Process]:
    """The local Beam workers under ``pid`` and the forker they are forked from (all share its command line)."""
    found = []
    for process in psutil.Process(pid).children(recursive=True):
        try:
            if "klio_dagster.executors.worker_forker" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:  # ended meanwhile (or a zombie): not running
            continue
    return found


def test_kill_9_mid_batch_leaves_no_workers_no_started_run_no_folder_and_a_rerun_completes(klio_env, tracks):
    instance = DagsterInstance.get()
    driver = cli("materialize", *FEATURES, "--all-tracks")  # 10 tracks: one Beam pipeline, 2 workers
    deadline = time.monotonic() + 240
    while not materializations(instance) and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = workers_of(driver.pid)
    assert materializations(instance) and workers, "the batch never started computing"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    recorded = materializations(instance)

    # Workers die with their driver.
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert alive == [], f"orphaned Beam workers: {[p.pid for p in alive]}"
    (run,) = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
    assert list((klio_env / "store" / RUNS_FOLDER).iterdir())  # the killed pipeline's results folder

    # Any later command marks the dead run failed and removes its folder; a rerun computes exactly what is missing.
    status = subprocess.run([*CLI, "status", tracks[0], "--json"], capture_output=True, text=True)
    assert status.returncode == 0 and "1 runs whose process had died were marked failed" in status.stderr
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    assert not list((klio_env / "store" / RUNS_FOLDER).iterdir())
    rerun = subprocess.run([*CLI, "materialize", *FEATURES, "--all-tracks", "--json"], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    computed = {tuple(p) for p in json.loads(rerun.stdout)["computed"]}
    everything = {(f, t) for f in FEATURES for t in tracks}
    assert computed == everything - set(recorded)
    assert set(materializations(instance).values()) == {1}  # no pair recorded twice


def test_two_identical_commands_started_together_compute_each_pair_once(klio_env, tracks):
    first, second = (cli("materialize", *FEATURES, "--tracks", *tracks[:3], "--json") for _ in range(2))
    outputs = [json.loads(p.communicate(timeout=400)[0]) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0
    counts = materializations(DagsterInstance.get())
    assert len(counts) == 3 * len(FEATURES) and set(counts.values()) == {1}
    for out in outputs:  # each command accounts for every pair: computed by itself or by the other
        covered = {tuple(p) for p in out["computed"] + out["computed_by_other_runs"]}
        assert covered == set(counts), out
    assert sum(len(o["computed"]) for o in outputs) == len(counts)


def _open_after(barrier, results) -> None:
    barrier.wait()  # every process opens the new instance at the same moment
    try:
        open_instance()
        results.put("ok")
    except Exception as exc:  # what each command would have died of
        results.put(f"{type(exc).__name__}: {exc}"[:300])


def test_commands_opening_a_new_instance_at_once_create_it_once(klio_env):
    """Six processes open an instance that does not exist yet at the same moment (without the lock:
    "table ... already exists", and an instance whose every later opening fails in alembic)."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(6), context.Queue()
    processes = [context.Process(target=_open_after, args=(barrier, results)) for _ in range(6)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [results.get(timeout=5) for _ in processes] == ["ok"] * 6
    assert DagsterInstance.get().get_runs_count() == 0  # and it opens afterwards


def test_a_worker_that_dies_fails_its_tracks_instead_of_hanging(tmp_path):
    catalogue = write_catalogue(tmp_path / "audio", n_tracks=4, duration_s=2.0, prefix="w")
    store = LocalFeatureStore(tmp_path / "store")
    ids = [t.track_id for t in catalogue] + ["w-crash"]
    record_sources(store, {**{t.track_id: str(t.path) for t in catalogue}, "w-crash": str(catalogue[0].path)})
    tasks = [TrackTask(t, ("dies_on_crash_tracks",)) for t in ids]
    results, start = [], time.monotonic()
    with pytest.raises(WorkerLost, match="a Beam worker process died"):
        for batch in BeamExecutor(num_workers=2).run(tasks, crash_graph, store):
            results += batch
    assert time.monotonic() - start < 120
    assert "w-crash" not in {r.track_id for r in results} and all(r.ok for r in results)
    assert not (Path(store.root) / RUNS_FOLDER).exists() or not list((Path(store.root) / RUNS_FOLDER).iterdir())
    assert os.getpid()  # this process survives, its workers are stopped
    assert not workers_of(os.getpid())


SLOW_LOCATION = '''
import os
from pathlib import Path
from klio_dagster import Audio, FeatureGraph, build_feature_definitions, feature

@feature(code_version="1", output="json")
def slow(audio: Audio, track_id: str) -> dict:
    Path(os.environ["SLOW_MARKERS"], track_id).touch()  # computing has begun
    return {"sum": sum(range(10**11))}  # minutes in C code that holds the GIL, as a long numba call does

defs = build_feature_definitions(FeatureGraph([slow]), name="slow_features")
'''


def test_workers_die_with_a_killed_driver_even_in_the_middle_of_a_long_track(klio_env, tracks, monkeypatch):
    """A worker computing a long track when its driver is killed used to run on to the track's end (minutes)."""
    (klio_env / "slow_location.py").write_text(SLOW_LOCATION)
    markers = klio_env / "markers"
    markers.mkdir()
    monkeypatch.setenv("KLIO_DEFINITIONS", str(klio_env / "slow_location.py"))
    monkeypatch.setenv("SLOW_MARKERS", str(markers))
    driver = cli("materialize", "slow", "--all-tracks")
    try:
        deadline = time.monotonic() + 180
        while len(list(markers.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = workers_of(driver.pid)
        assert len(list(markers.iterdir())) == 2 and workers, "the workers never started computing"
    finally:
        driver.send_signal(signal.SIGKILL)  # also when the test fails: its workers compute for minutes
        driver.wait()
    killed = time.monotonic()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert alive == [], f"workers outlived their driver by 30 s: {[p.pid for p in alive]}"
    assert time.monotonic() - killed < 10
