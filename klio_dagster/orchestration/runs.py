"""Launching batched feature runs and reading back what they did.

The same run description serves the CLI (executed in-process, waited for)
and sensors (a ``RunRequest`` the daemon queues).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dagster import (
    AssetKey,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    JobDefinition,
    RunRequest,
    RunsFilter,
)

from klio_dagster.events.priority import LIVE_PRIORITY_TAGS
from klio_dagster.orchestration.claims import claims_before, run_pairs
from klio_dagster.orchestration.compat import (
    MAX_RETRIES_TAG,
    InMemoryJob,
    RemoteJobOrigin,
    create_execution_plan,
    execute_run_iterator,
)
from klio_dagster.orchestration.run_health import fail_dead_runs, owner_tags
from klio_dagster.orchestration.tags import FAILED, STATUS_TAG, TRACKS_TAG
from klio_dagster.planning.lineage import plan_against
from klio_dagster.planning.planner import Pair, Plan

if TYPE_CHECKING:
    from klio_dagster.orchestration.factory import FeatureLocation
    from klio_dagster.tiers.base import Catalogue

Failure = dict[str, str]


def run_request_for(
    location: FeatureLocation,
    plan: Plan,
    force_features: Sequence[str],
    *,
    run_key: str | None,
    tags: dict[str, str],
) -> RunRequest:
    """One run computing every pair of ``plan``, for all its tracks.

    The selection is the planned features with all their feature ancestors:
    the step re-plans and skips what is current, and Dagster never treats an
    ancestor as an external input (which it cannot resolve for a run over an
    arbitrary set of partitions rather than a key or a range).
    """
    tracks = list(plan.features_by_track())
    return RunRequest(
        run_key=run_key,
        asset_selection=[AssetKey(f) for f in location.graph.with_ancestors(plan.features)],
        run_config=location.run_config(tracks, force_features),
        tags={**tags, TRACKS_TAG: str(len(tracks))},
    )


IN_FLIGHT = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def pairs_in_flight(catalogue: Catalogue) -> set[Pair]:
    """(feature, track) pairs that live runs, queued or running, were asked to make current.

    A run's selection times its tracks: a superset of what it computes (it
    skips what is current when it starts), which is what deduplication needs.
    """
    pairs: set[Pair] = set()
    for run in catalogue.instance.get_runs(RunsFilter(statuses=IN_FLIGHT, tags=LIVE_PRIORITY_TAGS)):
        pairs |= run_pairs(catalogue, run)
    return pairs


@dataclass
class RunOutcome:
    """What one run recorded: computed pairs, failed pairs with their errors, and step errors."""

    run_id: str
    computed: list[Pair] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    step_errors: list[str] = field(default_factory=list)


def execute_run(
    job: JobDefinition,
    catalogue: Catalogue,
    request: RunRequest,
    on_progress: Callable[[int], None] | None = None,
    origin: RemoteJobOrigin | None = None,
) -> RunOutcome:
    """Execute a run request in this process, against ``instance``, and wait for it.

    Events are streamed to the instance and not kept in memory (unlike
    ``execute_in_process``, which keeps every event of the run), so memory
    stays flat however many tracks the run has; the outcome is then read
    back from the catalogue (the event log in pages, or the ledger). ``on_progress`` is told how many
    (feature, track) pairs the run has recorded so far, successes and failures, as they are recorded
    (see :class:`RunProgress`), and the final count at the end.
    ``origin`` names the code location and job the UI shows the run under;
    such a run is never retried by the daemon (the command that ran it reports
    its outcome).
    """
    instance = catalogue.instance
    selection = frozenset(request.asset_selection or [])
    subset = job.get_subset(asset_selection=selection) if selection else job
    # Failures are reported by the caller and kept in the event log: keep the console quiet.
    run_config = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}, **request.run_config}
    plan = create_execution_plan(subset, run_config=run_config, instance_ref=instance.get_ref())
    run = instance.create_run_for_job(
        job_def=subset,
        run_config=run_config,
        tags={**job.run_tags, **request.tags, **owner_tags(), **({MAX_RETRIES_TAG: "0"} if origin else {})},
        asset_selection=selection or None,
        execution_plan=plan,
        remote_job_origin=origin,
    )
    with RunProgress(catalogue, run.run_id, on_progress) as progress:
        for event in execute_run_iterator(InMemoryJob(subset), run, instance):
            progress.saw(event)
    outcome = catalogue.run_outcome(run.run_id)
    if on_progress:
        on_progress(len(outcome.computed) + len(outcome.failed))
    return outcome


class RunProgress:
    """Tells ``on_progress`` how many pairs a run has recorded, while it runs.

    Pairs the run yields as events (one per pair: the catalogue's ``pair_events``) are counted as
    they come; pairs recorded another way (in event batches, or in the ledger) are asked of the
    catalogue every :attr:`interval_s` seconds, from a thread.
    """

    interval_s = 1.0

    def __init__(self, catalogue: Catalogue, run_id: str, on_progress: Callable[[int], None] | None):
        self._catalogue, self._run_id, self._on_progress = catalogue, run_id, on_progress
        self._kinds = catalogue.pair_events if on_progress else frozenset()
        self._polled = on_progress is not None and catalogue.pairs_recorded_by(run_id) is not None
        self._events = self._recorded = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=f"progress-{run_id[:8]}", daemon=True)

    def __enter__(self) -> RunProgress:
        if self._polled:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._polled:
            self._thread.join()

    def saw(self, event: DagsterEvent) -> None:
        if event.event_type in self._kinds:
            with self._lock:
                self._events += 1
                self._report()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            recorded = self._catalogue.pairs_recorded_by(self._run_id) or 0
            with self._lock:
                self._recorded = recorded
                self._report()

    def _report(self) -> None:
        assert self._on_progress is not None
        self._on_progress(self._events + self._recorded)




@dataclass
class PlanOutcome:
    """What executing a plan did, over its runs: the pairs computed here, by other runs, failed, not recorded."""

    run_ids: list[str] = field(default_factory=list)
    computed: list[Pair] = field(default_factory=list)
    computed_elsewhere: list[Pair] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    step_errors: list[str] = field(default_factory=list)
    missing: list[Pair] = field(default_factory=list)
    waited_for: list[str] = field(default_factory=list)


def execute_plan(
    location: FeatureLocation,
    job: JobDefinition,
    catalogue: Catalogue,
    work: Plan,
    force_features: Sequence[str],
    *,
    tags: dict[str, str],
    on_progress: Callable[[int], None] | None = None,
    max_rounds: int = 3,
    origin: RemoteJobOrigin | None = None,
) -> PlanOutcome:
    """Execute ``work`` in this process until every pair is recorded, here or by the runs that claimed it.

    A run leaves pairs that earlier runs in progress claim to those runs; this
    waits for them (marking dead ones failed, which ends their claims) and
    computes what they did not record, in up to ``max_rounds`` runs. ``on_progress`` is told how
    many pairs its runs have recorded so far, in all.
    """
    outcome = PlanOutcome()
    asked = list(work.to_compute)
    for round_ in range(max_rounds):
        request = run_request_for(location, work, force_features if round_ == 0 else [], run_key=None, tags=tags)
        before = len(outcome.computed) + len(outcome.failed)
        report = (lambda n, before=before: on_progress(before + n)) if on_progress else None
        done = execute_run(job, catalogue, request, report, origin)
        outcome.run_ids.append(done.run_id)
        outcome.computed += done.computed
        outcome.failed += done.failed
        if not done.failed:
            outcome.step_errors += done.step_errors
        recorded = set(outcome.computed) | {(x["feature"], x["track"]) for x in outcome.failed}
        missing = [p for p in work.to_compute if p not in recorded]
        holders = sorted({run_id for p, run_id in claims_before(catalogue, done.run_id).items() if p in set(missing)})
        if not missing or not holders:
            break
        outcome.waited_for += holders
        wait_for_runs(catalogue.instance, holders)
        work = plan_against(catalogue, location.graph, sorted({f for f, _ in missing}), sorted({t for _, t in missing}))
        outcome.computed_elsewhere += [p for p in missing if p not in set(work.to_compute)]
        if not work.to_compute:
            break
    recorded = set(outcome.computed) | set(outcome.computed_elsewhere) | {(x["feature"], x["track"]) for x in outcome.failed}
    outcome.missing = [p for p in asked if p not in recorded]
    return outcome


def wait_for_runs(instance: DagsterInstance, run_ids: Sequence[str], poll_s: float = 1.0) -> None:
    """Return once none of ``run_ids`` is queued or in progress; runs whose process died are marked failed."""
    while True:
        fail_dead_runs(instance)
        if not instance.get_runs(RunsFilter(run_ids=list(run_ids), statuses=IN_FLIGHT)):
            return
        time.sleep(poll_s)


def read_outcome(instance: DagsterInstance, run_id: str, page_size: int = 500) -> RunOutcome:
    """Computed and failed pairs of a finished run, from its event log.

    Pages are small because each record carries its metadata (previews included).
    """
    outcome = RunOutcome(run_id)
    kinds = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION, DagsterEventType.STEP_FAILURE}
    cursor = None
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, of_type=kinds, limit=page_size)
        for record in page.records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                m = event.step_materialization_data.materialization
                outcome.computed.append((m.asset_key.path[-1], m.partition))
            elif event.event_type == DagsterEventType.ASSET_OBSERVATION:
                o = event.asset_observation_data.asset_observation
                if o.tags.get(STATUS_TAG) == FAILED:
                    outcome.failed.append({"feature": o.asset_key.path[-1], "track": o.partition, "error": o.metadata["error"].value})
            elif event.step_failure_data.error:
                outcome.step_errors.append(event.step_failure_data.error.message.strip())
        cursor = page.cursor
        if not page.has_more:
            break
    return outcome
