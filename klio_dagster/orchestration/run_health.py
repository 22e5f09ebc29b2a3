"""Runs whose process died: marked failed, their result folders removed.

A run that is killed (``kill -9``, the OOM killer, a reboot) cannot record
its own end: it would stay STARTED forever, hold its tracks' claims, count
against the run queue's concurrency limit, and leave its Beam results folder
behind. Every run records the process executing it (``klio/owner``); any
later command or sensor tick on the same host finds in-progress runs whose
owner is gone, marks them failed with the reason, and removes the results
folders of dead drivers. Runs owned by other hosts are left to that host
(or to Dagster's run monitoring).
"""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from klio_dagster.executors.processes import ProcessIdentity
from klio_dagster.orchestration.compat import PARENT_RUN_ID_TAG
from klio_dagster.orchestration.tags import OWNER_TAG
from klio_dagster.storage.stores import RUNS_FOLDER, FeatureStore

#: Statuses of a run that a process is executing (or is about to: the CLI creates, then starts).
OWNED = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def owner_tags() -> dict[str, str]:
    """The tag naming this process as a run's owner."""
    return {OWNER_TAG: ProcessIdentity.current().token()}


def claim_run(instance: DagsterInstance, run_id: str) -> None:
    """Record this process as the owner of ``run_id`` (the step does it for runs a launcher started)."""
    instance.add_run_tags(run_id, owner_tags())


def fail_dead_runs(instance: DagsterInstance) -> list[str]:
    """Mark failed every in-progress run of this host whose owning process is gone; return their IDs."""
    dead = []
    for run in instance.get_runs(RunsFilter(statuses=OWNED)):
        owner = ProcessIdentity.from_token(run.tags.get(OWNER_TAG, ""))
        if owner is None or owner.is_alive() or _inherited(instance, run):
            continue
        instance.report_run_failed(
            run,
            f"klio-dagster: the process executing this run (PID {owner.pid} on {owner.host}) is gone "
            "(killed or crashed); its claims are released and a new run recomputes what it did not record",
        )
        dead.append(run.run_id)
    return dead


def _inherited(instance: DagsterInstance, run: DagsterRun) -> bool:
    """Whether the run's owner tag was copied from the run it retries (its own process has not claimed it yet)."""
    parent_id = run.tags.get(PARENT_RUN_ID_TAG)
    parent = instance.get_run_by_id(parent_id) if parent_id else None
    return parent is not None and parent.tags.get(OWNER_TAG) == run.tags.get(OWNER_TAG)


def remove_stale_results(store: FeatureStore) -> list[str]:
    """Remove Beam results folders whose driver, on this host, is gone; return their names."""
    removed = []
    for name in store.list_folders(RUNS_FOLDER):
        owner = ProcessIdentity.from_token(name.rpartition("-")[0])
        if owner is not None and not owner.is_alive():
            store.delete_folder(f"{RUNS_FOLDER}/{name}")
            removed.append(name)
    return removed


def clean_up_after_dead_runs(instance: DagsterInstance, store: FeatureStore) -> tuple[list[str], list[str]]:
    """Both of the above: (runs marked failed, results folders removed)."""
    return fail_dead_runs(instance), remove_stale_results(store)
