"""A live event's run is never starved by a large backfill: Dagster's real run queue decides.

The instance's run queue (``resources.local.INSTANCE_CONFIG``, see ``klio_dagster.priority``)
is driven by Dagster's own ``QueuedRunCoordinatorDaemon`` over a real workspace: the
``definitions`` code location in a code server subprocess, runs created with real remote
origins and put in the queue by ``instance.submit_run``, dequeued runs launched by the real
``DefaultRunLauncher`` (run worker processes started by the code server).

A 10,000-track backfill is modelled as Dagster's backfill daemon submits it: 10 runs of
1,000 tracks, each tagged with one ``dagster/backfill`` id, submitted through
``submit_asset_run`` (the function the asset backfill daemon calls). The live event's run
comes from the real sensor daemon ticking the deployment's local-queue sensor, so its
tags are the product's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterInstance, RunRequest
from dagster._core.execution.submit_asset_runs import submit_asset_run
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import BACKFILL_ID_TAG, PRIORITY_TAG, SENSOR_NAME_TAG
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._daemon.sensor import execute_sensor_iteration
from runs import catalogue_of

from examples.reference_graph import reference_graph
from klio_dagster.events.local_queue import LocalQueue
from klio_dagster.events.messages import TrackEvent
from klio_dagster.events.priority import run_queue_config
from klio_dagster.orchestration.tags import FEATURES_ASSET_NAME, LANE_TAG
from klio_dagster.tiers.base import Catalogue

pytestmark = pytest.mark.integration
#: Priority is the run queue's, whatever the tier records: both tiers queue the same runs.
TIERS = ("native", "ledger")

REPO = Path(__file__).resolve().parents[1]
LOCATION = "definitions"
SENSOR = "klio_features_local_ingestion"
BACKFILL_ID = "tracks-10k"
N_BACKFILL_TRACKS = 10_000
BATCH = 1_000  # BackfillPolicy.multi_run(max_partitions_per_run=1000) of the feature assets
FEATURES = reference_graph.names
IN_PROGRESS = (DagsterRunStatus.STARTING, DagsterRunStatus.STARTED)
log = logging.getLogger("test_priority")


@dataclass
class RunQueue:
    """The instance, the workspace and Dagster's run queue daemon, as `dagster-daemon` holds them."""

    instance: DagsterInstance
    workspace: WorkspaceProcessContext
    daemon: QueuedRunCoordinatorDaemon
    queue: LocalQueue
    catalogue: Catalogue
    media: Path

    def dequeue(self) -> None:
        """One iteration of the run queue daemon (what it does every few seconds)."""
        list(self.daemon.run_iteration(self.workspace))

    def enqueue_backfill(self) -> list[str]:
        """Ten queued runs of 1,000 tracks, one backfill id: what the backfill daemon submits.

        Each run names its 1,000 tracks in run config instead of the partition-range tags
        the backfill daemon sets: on SQLite event storage, creating a run for a range of
        1,000 dynamic partitions writes 6,000 ASSET_MATERIALIZATION_PLANNED events (about
        30 s per run), and the run queue reads neither the config nor the range tags, only
        the status, `dagster/backfill` and `dagster/priority`. Job: no name, so that
        `submit_asset_run` picks the implicit asset job, as it does for a UI backfill.
        """
        keys = [f"bf-{i:05d}" for i in range(N_BACKFILL_TRACKS)]
        # 10,000 tracks through the tier, in one bulk write; their files are never written, so a batch
        # that starts fails each pair at once (the queue, not the compute, is under test).
        self.catalogue.register({key: str(self.media / f"{key}.wav") for key in keys})
        # Every feature, as "Materialize all" in the UI selects them.
        selection = sorted(self.workspace.create_request_context().asset_graph.materializable_asset_keys)
        assert [k.path[-1] for k in selection] == sorted(FEATURES), selection
        run_ids = []
        for index in range(N_BACKFILL_TRACKS // BATCH):
            tracks = keys[index * BATCH : (index + 1) * BATCH]
            request = RunRequest(
                asset_selection=selection,
                run_config={"ops": {FEATURES_ASSET_NAME: {"config": {"tracks": tracks}}}},
                tags={BACKFILL_ID_TAG: BACKFILL_ID},
            )
            context = self.workspace.create_request_context()
            run = asyncio.run(submit_asset_run(None, request, index, self.instance, self.workspace, context, {}, {}, log))
            run_ids.append(run.run_id)
        assert [self.status(r) for r in run_ids] == [DagsterRunStatus.QUEUED] * 10
        return run_ids

    def live_event(self, track) -> DagsterRun:
        """Publish one event and tick the sensor daemon until it has queued the event's run."""
        before = {r.run_id for r in self._sensor_runs()}
        self.queue.publish_events([TrackEvent(track.track_id, uri=str(track.path))])
        deadline = time.time() + 30  # the sensor's minimum interval is 5 s
        while time.time() < deadline:
            list(execute_sensor_iteration(self.workspace, log, None, None))
            new = [r for r in self._sensor_runs() if r.run_id not in before]
            if new:
                (run,) = new
                assert run.status == DagsterRunStatus.QUEUED, run.status
                assert run.tags[LANE_TAG] == "live" and run.remote_job_origin.location_name == LOCATION
                return run
            time.sleep(0.5)
        pytest.fail(f"the sensor daemon queued no run for {track.track_id} within 30 s")

    def _sensor_runs(self) -> list[DagsterRun]:
        return list(self.instance.get_runs(RunsFilter(tags={SENSOR_NAME_TAG: SENSOR})))

    def status(self, run_id: str) -> DagsterRunStatus:
        return self.instance.get_run_by_id(run_id).status

    def wait_finished(self, run_ids, timeout_s: float = 60) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if all(self.instance.get_run_by_id(r).is_finished for r in run_ids):
                return
            time.sleep(0.25)
        pytest.fail(f"runs not finished after {timeout_s:.0f} s: {[(r, self.status(r)) for r in run_ids]}")

    def end(self, run_id: str) -> None:
        """End a launched run (cancel it through the run launcher) and wait until it has ended."""
        if not self.instance.get_run_by_id(run_id).is_finished:
            self.instance.run_launcher.terminate(run_id)
        self.wait_finished([run_id])


def _processes_of(home: Path) -> set[int]:
    """Every living process but this one whose environment names ``home`` as DAGSTER_HOME.

    The code server inherits this process's environment, and its run workers and their step
    processes inherit the code server's, even once orphaned.
    """
    marker = f"DAGSTER_HOME={home}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            found.add(int(entry))
    return found


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


@contextmanager
def run_queue(klio_env: Path) -> Iterator[RunQueue]:
    """The instance in ``$DAGSTER_HOME`` with a workspace of the ``definitions`` location.

    On exit every run still in progress is cancelled and waited for, the code server is shut
    down, and every process started for this instance (code server, run workers, step
    processes) must have exited.
    """
    home = Path(os.environ["DAGSTER_HOME"])
    assert not _processes_of(home)
    with DagsterInstance.get() as instance:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        target = ModuleTarget(module_name="definitions", attribute=None, working_directory=str(REPO), location_name=LOCATION)
        try:
            with WorkspaceProcessContext(instance, target) as workspace, QueuedRunCoordinatorDaemon(interval_seconds=1) as daemon:
                error = workspace.create_request_context().get_code_location_error(LOCATION)
                assert error is None, error
                import definitions  # here: the location reads its tier (the test's) when it is imported

                catalogue = catalogue_of(definitions.defs)
                rq = RunQueue(instance, workspace, daemon, LocalQueue(klio_env / "queue"), catalogue, klio_env / "backfill")
                try:
                    yield rq
                finally:
                    active = instance.get_runs(RunsFilter(statuses=[*IN_PROGRESS, DagsterRunStatus.CANCELING]))
                    for run in active:
                        if run.status != DagsterRunStatus.CANCELING:
                            instance.run_launcher.terminate(run.run_id)
                    rq.wait_finished([r.run_id for r in active])
        finally:
            # The code server exits once its run workers have. A terminated run worker's exit (its
            # interpreter teardown with Beam and numba loaded) took over 30 s under two busy loops:
            # wait for exit, not for a time. Only a process that does not exit fails this.
            deadline = time.time() + 180
            while _processes_of(home) and time.time() < deadline:
                time.sleep(0.2)
            left = {pid: _command_line(pid) for pid in _processes_of(home)}
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            assert not left, f"processes left behind: {left}"


def _backfill_states(rq: RunQueue, run_ids: list[str]) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {"queued": [], "in_progress": [], "finished": []}
    for run_id in run_ids:
        status = rq.status(run_id)
        key = "queued" if status == DagsterRunStatus.QUEUED else "in_progress" if status in IN_PROGRESS else "finished"
        states[key].append(run_id)
    return states


def _counts(states: dict[str, list[str]]) -> dict[str, int]:
    return {k: len(v) for k, v in states.items()}


def _priority(rq: RunQueue, run: DagsterRun) -> str:
    return f"{PRIORITY_TAG}={rq.instance.get_run_by_id(run.run_id).tags.get(PRIORITY_TAG)}"


def test_live_run_gets_the_free_slot_while_a_10k_track_backfill_is_queued(klio_env, catalogue, monkeypatch):
    """The product's run queue (2 runs, 1 backfill run at a time): a live run waits for no batch."""
    monkeypatch.delenv("KLIO_PUBSUB_SUBSCRIPTION", raising=False)  # the local-queue sensor
    with run_queue(klio_env) as rq:
        backfill = rq.enqueue_backfill()
        live = rq.live_event(catalogue[0])  # enqueued after the whole backfill
        created = {r.dagster_run.run_id: r.create_timestamp for r in rq.instance.get_run_records()}
        assert created[live.run_id] > max(created[r] for r in backfill)

        rq.dequeue()
        states = _backfill_states(rq, backfill)
        assert rq.status(live.run_id) in IN_PROGRESS, (
            f"the live run ({_priority(rq, live)}) was not dequeued: {rq.status(live.run_id)}, backfill {_counts(states)}"
        )
        assert len(states["in_progress"]) == 1 and len(states["queued"]) == 9, _counts(states)  # one batch at a time

        # The live run ends (for real: it computes every feature of its track). The slot it
        # leaves stays free for the next live event: however long the batches take, the
        # backfill never holds more than one slot.
        rq.wait_finished([live.run_id], timeout_s=90)
        assert rq.status(live.run_id) == DagsterRunStatus.SUCCESS
        rq.dequeue()
        states = _backfill_states(rq, backfill)
        assert len(states["in_progress"]) == 1, f"the backfill took the free slot: {_counts(states)}"
        assert len(states["queued"]) == 9 - len(states["finished"]), _counts(states)

        # So a new event's run starts at once, beside a running batch: it waits for none.
        second = rq.live_event(catalogue[1])
        rq.dequeue()
        states = _backfill_states(rq, backfill)
        assert rq.status(second.run_id) in IN_PROGRESS, f"{rq.status(second.run_id)}, backfill {_counts(states)}"
        # At most one batch beside it (the one running may have just finished: a ledger batch of a few tracks is quick).
        assert len(states["in_progress"]) <= 1 and len(states["queued"]) == 10 - len(states["finished"]) - len(states["in_progress"]), (
            _counts(states)
        )


def test_with_one_slot_the_live_run_waits_for_at_most_one_batch(klio_env, catalogue, monkeypatch):
    """Priority on its own: one run at a time, a batch in progress; the live run goes next."""
    monkeypatch.delenv("KLIO_PUBSUB_SUBSCRIPTION", raising=False)
    (klio_env / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + run_queue_config(max_concurrent_runs=1))
    with run_queue(klio_env) as rq:
        assert rq.instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1
        backfill = rq.enqueue_backfill()
        rq.dequeue()
        states = _backfill_states(rq, backfill)
        assert len(states["in_progress"]) == 1 and len(states["queued"]) == 9, states
        (batch,) = states["in_progress"]

        live = rq.live_event(catalogue[0])
        rq.dequeue()
        if rq.status(live.run_id) == DagsterRunStatus.QUEUED:  # the batch holds the one slot (the usual case)
            assert len(_backfill_states(rq, backfill)["queued"]) == 9
            rq.end(batch)  # the batch ends (cancelled: the quickest real way for a run to end)
            rq.dequeue()
        states = _backfill_states(rq, backfill)
        assert rq.status(live.run_id) in IN_PROGRESS, (
            f"the live run ({_priority(rq, live)}) waited for a second batch: {rq.status(live.run_id)}, "
            f"backfill {_counts(states)}"
        )
        assert states["in_progress"] == [] and len(states["queued"]) == 9, _counts(states)
