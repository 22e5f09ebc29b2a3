"""Running ``compute_track`` over many tracks as one Apache Beam pipeline.

Locally the pipeline runs on Beam's ``FnApiRunner`` with one SDK worker
process per core; in production the same pipeline runs on Dataflow; any
portable job service (``PortableRunner``, ``--job_endpoint``) runs it too. Each
worker writes a track's results as one small JSON object under a run
folder of the feature store; the launching step polls that folder, so it
records materialisations while the pipeline is still computing (and the
same mechanism works for remote runners, where the store is on GCS).

A remote job (Dataflow, a job service) is reported once its runner accepts
it (:class:`SubmittedJob`: its ID and console URL) and cancelled if the
caller stops before it ends: a terminated Dagster run leaves no job running.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import apache_beam as beam
import psutil
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from apache_beam.runners.runner import PipelineResult
from threadpoolctl import threadpool_limits

from klio_dagster.core.execution import PairResult, TrackLimits, TrackTask, compute_track
from klio_dagster.core.graph import FeatureGraph
from klio_dagster.errors import ConfigurationError, WorkerLost
from klio_dagster.executors.dataflow import console_url, job_args
from klio_dagster.executors.processes import ProcessIdentity, exit_with, kill_processes
from klio_dagster.executors.worker_forker import WorkerForker
from klio_dagster.storage.stores import RUNS_FOLDER, FeatureStore

LOCAL_RUNNER = "FnApiRunner"
PORTABLE_RUNNER = "PortableRunner"
DATAFLOW_RUNNER = "DataflowRunner"
RUNNERS = (LOCAL_RUNNER, PORTABLE_RUNNER, DATAFLOW_RUNNER)


class _ComputeTrack(beam.DoFn):
    """Computes one track per element; ``driver``: the local driver process, with which the worker dies."""

    def __init__(
        self,
        graph: FeatureGraph,
        store: FeatureStore,
        limits: TrackLimits,
        results_folder: str,
        native_threads: int,
        driver: ProcessIdentity | None,
    ):
        self.graph, self.store, self.limits, self.results_folder = graph, store, limits, results_folder
        self.native_threads, self.driver = native_threads, driver

    def setup(self) -> None:
        if self.driver:
            exit_with(self.driver)
        if self.native_threads:
            # Applies to the whole worker process until it exits.
            threadpool_limits(limits=self.native_threads)

    def process(self, task: TrackTask):
        results = compute_track(task, self.graph, self.store, self.limits)
        payload = json.dumps([r.to_dict() for r in results], default=str).encode()
        self.store.write_bytes(f"{self.results_folder}/{task.track_id}.json", payload)
        yield len(results)


def _import_roots(graph: FeatureGraph) -> list[str]:
    """The folders from which the graph's feature modules were imported (for ``a.b.c``, the folder above ``a``)."""
    roots: list[str] = []
    for feature in (graph[name] for name in (*graph.order, *graph.external_names)):
        module = sys.modules.get(feature.fn.__module__)
        path = getattr(module, "__file__", None)
        if path:
            root = str(Path(path).resolve().parents[feature.fn.__module__.count(".")])
            roots.append(root)
    return list(dict.fromkeys(roots))


@contextmanager
def _importable_by_workers(graph: FeatureGraph) -> Iterator[None]:
    """Local workers are new interpreters that unpickle the graph by module name: let them import its modules.

    A location loaded from a file (``dagster dev -f``) or a folder that is not installed is
    importable here only through ``sys.path``, which child processes do not inherit; their
    ``PYTHONPATH`` gets those folders while the pipeline starts its workers.
    """
    before = os.environ.get("PYTHONPATH")
    paths = [p for p in (before or "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*_import_roots(graph), *paths]))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


class _ForkedWorkersFilter(logging.Filter):
    """Drops the local runner's warning that ``in_memory`` mode runs one worker: with the forker's command, it runs several."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "direct_running_mode should be" not in record.getMessage()


def _quiet_in_memory_warning() -> None:
    logger = logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner")
    if not any(isinstance(f, _ForkedWorkersFilter) for f in logger.filters):
        logger.addFilter(_ForkedWorkersFilter())


def _graph_modules(graph: FeatureGraph) -> list[str]:
    """The modules defining the graph's features (not ``__main__``: Beam pickles its functions by value)."""
    names = (feature.fn.__module__ for feature in (graph[n] for n in (*graph.order, *graph.external_names)))
    return sorted({name for name in names if name != "__main__"})


class _LocalWorkers:
    """The SDK workers ``forker`` forked for this batch, watched for deaths."""

    def __init__(self, forker: WorkerForker) -> None:
        self.forker = forker
        self.known: dict[int, psutil.Process] = {}
        self.since = time.time() - 1  # workers of an earlier batch of this forker may still be exiting

    def lost(self) -> str | None:
        """Which worker seen earlier has ended (or the forker), if one has; ``None`` while all run."""
        ended = self.forker.ended()
        if ended is not None:
            return f"the worker forker (PID {self.forker.process.pid}, exit status {ended})"
        for process in self.forker.workers():
            try:
                if process.create_time() >= self.since:
                    self.known.setdefault(process.pid, process)
            except psutil.NoSuchProcess:
                continue
        for pid, process in self.known.items():
            try:
                if process.status() != psutil.STATUS_ZOMBIE:
                    continue
            except psutil.NoSuchProcess:
                pass
            return f"PID {pid}"
        return None

    def stop(self) -> None:
        kill_processes([*self.known.values(), *self.forker.workers()])


@dataclass(frozen=True)
class SubmittedJob:
    """A batch's pipeline as a remote runner accepted it: what its Dagster run shows of it.

    ``job_id`` and ``console_url`` are Dataflow's (empty elsewhere).
    """

    runner: str
    name: str
    job_id: str = ""
    console_url: str = ""

    def tags(self) -> dict[str, str]:
        """Run tags naming the job (``klio/beam_job``, ``klio/dataflow_job_id``, ``klio/dataflow_console_url``)."""
        tags = {"klio/beam_runner": self.runner, "klio/beam_job": self.name}
        if self.job_id:
            tags.update({"klio/dataflow_job_id": self.job_id, "klio/dataflow_console_url": self.console_url})
        return tags

    def describe(self) -> str:
        where = f": job {self.job_id}, {self.console_url}" if self.job_id else ""
        return f"{self.runner} accepted the pipeline {self.name}{where}"


def _spread(tasks: Sequence[TrackTask]) -> list[TrackTask]:
    """Tasks in a stable pseudo-random order.

    The local runner deals a stage's input to its workers in turn, so a
    pattern in the input order (say, every other file stereo) would land all
    the costly tracks on one worker. Ordering by a hash of the track ID breaks
    such patterns and gives the same order on every run.
    """
    return sorted(tasks, key=lambda t: hashlib.blake2b(t.track_id.encode(), digest_size=8).digest())


@dataclass
class BeamExecutor:
    """One Beam pipeline per batch of tracks.

    Parameters
    ----------
    runner : str
        ``"FnApiRunner"`` (local, multi-processing), ``"PortableRunner"`` (a job service named by
        ``--job_endpoint`` in ``pipeline_args``) or ``"DataflowRunner"``.
    num_workers : int
        Local SDK worker processes; 0 means one per core.
    pipeline_args : list of str
        Extra Beam pipeline options (``--project=...``, ``--region=...``, ...).
    poll_interval_s : float
        How often the results folder is listed while the pipeline runs.
    labels : dict of str to str
        Labels of a Dataflow job (the Dagster run's ID), checked against Dataflow's rules.
    on_submitted : callable, optional
        Called with the :class:`SubmittedJob` once a remote runner accepts a batch's pipeline
        (from the thread iterating :meth:`run`).
    native_threads : int
        Threads of the native pools (BLAS, OpenMP) in each worker process; 0
        keeps the libraries' default of one per core. The default, 1, suits
        one worker process per core (unlimited, every worker's BLAS calls
        start a thread per core and the workers slow each other down: a
        quarter of the reference graph's time, see docs/benchmarks.md), and
        gives the same bits as :class:`~klio_dagster.execution.InProcessExecutor`.
    """

    runner: str = LOCAL_RUNNER
    num_workers: int = 0
    pipeline_args: list[str] = field(default_factory=list)
    poll_interval_s: float = 0.5
    native_threads: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    on_submitted: Callable[[SubmittedJob], None] | None = None

    def _pipeline(self, job_name: str, forker: WorkerForker | None) -> beam.Pipeline:
        if self.runner == LOCAL_RUNNER:
            from apache_beam.runners.portability.fn_api_runner import FnApiRunner
            from apache_beam.transforms.environments import SubprocessSDKEnvironment

            workers = self.num_workers or multiprocessing.cpu_count()
            # Beam's multi_processing mode, with the worker command of the forker (no direct_running_mode:
            # that would replace the command with a fresh interpreter per worker).
            options = PipelineOptions(
                self.pipeline_args,
                direct_num_workers=workers,
                default_sdk_harness_log_level="ERROR",
                job_name=job_name,
            )
            environment = SubprocessSDKEnvironment.from_command_string(forker.worker_command())
            _quiet_in_memory_warning()
            return beam.Pipeline(runner=FnApiRunner(default_environment=environment), options=options)
        if self.runner == PORTABLE_RUNNER:
            return beam.Pipeline(runner=PORTABLE_RUNNER, options=PipelineOptions([*self.pipeline_args, f"--job_name={job_name}"]))
        if self.runner == DATAFLOW_RUNNER:
            options = PipelineOptions([*self.pipeline_args, *job_args(job_name, self.labels)])
            return beam.Pipeline(runner=DATAFLOW_RUNNER, options=options)
        raise ConfigurationError(f"unknown Beam runner {self.runner!r}: use one of {', '.join(RUNNERS)}")

    def build(
        self,
        tasks: Sequence[TrackTask],
        graph: FeatureGraph,
        store: FeatureStore,
        limits: TrackLimits | None = None,
        forker: WorkerForker | None = None,
    ) -> tuple[beam.Pipeline, str, str]:
        """The batch's pipeline, not yet run; the folder its workers write results to; its job name.

        ``forker`` forks the local runner's workers (required for it).
        """
        if self.runner == DATAFLOW_RUNNER and not store.root_uri.startswith("gs://"):
            raise ConfigurationError("Dataflow workers cannot reach a local feature store: set KLIO_STORE to gs://bucket/prefix")
        driver = ProcessIdentity.current()
        batch = uuid.uuid4().hex
        folder, job_name = f"{RUNS_FOLDER}/{driver.token()}-{batch}", f"klio-{batch[:12]}"
        local = self.runner == LOCAL_RUNNER
        compute = _ComputeTrack(graph, store, limits or TrackLimits(), folder, self.native_threads, driver if local else None)
        pipeline = self._pipeline(job_name, forker)
        (
            pipeline
            | "Tracks" >> beam.Create(_spread(tasks))
            | "Spread" >> beam.Reshuffle()
            | "Compute" >> beam.ParDo(compute)
        )
        return pipeline, folder, job_name

    def run(
        self, tasks: Sequence[TrackTask], graph: FeatureGraph, store: FeatureStore, limits: TrackLimits | None = None
    ) -> Iterator[list[PairResult]]:
        local = self.runner == LOCAL_RUNNER
        # Workers start while the pipeline runs: their environment is kept until it ends.
        with _importable_by_workers(graph) if local else nullcontext(), self._forker(graph) as forker:
            pipeline, folder, job_name = self.build(tasks, graph, store, limits, forker)
            job = _Job(pipeline)
            threading.Thread(target=job.run, name="klio-beam-pipeline", daemon=True).start()
            for results in self._collect(job, store, folder, len(tasks), _LocalWorkers(forker) if local else None, job_name):
                for result in results:
                    if result.ok:
                        result.metadata.update(executor=f"beam/{self.runner}", pipeline_job=job_name)
                yield results

    @contextmanager
    def _forker(self, graph: FeatureGraph) -> Iterator[WorkerForker | None]:
        """The local runner's worker forker: this process's (``klio-dagster materialize`` starts one early), or the batch's own."""
        if self.runner != LOCAL_RUNNER:
            yield None
            return
        shared = WorkerForker.of_this_process()
        forker = shared or WorkerForker.start(_graph_modules(graph))
        try:
            yield forker
        finally:
            if not shared:
                forker.stop()

    def _submitted(self, result: PipelineResult, job_name: str) -> SubmittedJob:
        if self.runner == DATAFLOW_RUNNER and getattr(result, "has_job", False):  # a template run submits nothing
            options = PipelineOptions(self.pipeline_args).view_as(GoogleCloudOptions)
            job_id = result.job_id()
            return SubmittedJob(self.runner, job_name, job_id, console_url(options.project, options.region, job_id))
        return SubmittedJob(self.runner, job_name)

    def _failure(self, error: BaseException) -> str:
        """What a failed pipeline's error says, with where to look when it says nothing (a timeout)."""
        detail = str(error)
        message = f"the Beam pipeline failed: {type(error).__name__}" + (f": {detail}" if detail else "")
        if self.runner == PORTABLE_RUNNER and not detail:
            endpoint = PipelineOptions(self.pipeline_args).get_all_options().get("job_endpoint")
            message += f" (is a job service serving --job_endpoint={endpoint}?)"
        return message

    def _collect(
        self,
        job: _Job,
        store: FeatureStore,
        folder: str,
        n_tasks: int,
        workers: _LocalWorkers | None,
        job_name: str,
    ) -> Iterator[list[PairResult]]:
        """Each track's results as its worker writes them, until the pipeline ends; then the run folder goes.

        Local workers are watched: if one dies while tracks still lack results
        (the runner itself would wait for it forever), the others are stopped
        and :class:`WorkerLost` is raised. If the caller stops (the run is
        terminated, interrupted, or fails), the local workers are stopped, or
        the remote job cancelled.
        """
        seen: set[str] = set()
        reported = False

        def new_results() -> Iterator[list[PairResult]]:
            for name in sorted(store.list_names(folder) - seen):
                seen.add(name)
                yield [PairResult(**r) for r in json.loads(store.read_bytes(f"{folder}/{name}"))]

        try:
            while True:
                finished = job.finished.is_set()
                if not reported and job.result is not None and not workers:
                    reported = True
                    if self.on_submitted:
                        self.on_submitted(self._submitted(job.result, job_name))
                yield from new_results()
                if finished:
                    break
                lost = workers.lost() if workers and len(seen) < n_tasks else None
                if lost:
                    yield from new_results()  # it may have written its last results and ended with the pipeline
                    job.finished.wait(self.poll_interval_s)
                if lost and len(seen) < n_tasks and not job.finished.is_set():
                    raise WorkerLost(
                        f"a Beam worker process died ({lost}) while {n_tasks - len(seen)} of {n_tasks} tracks had no "
                        "result: a crash in native code or the out-of-memory killer (see KLIO_MAX_TRACK_SECONDS)"
                    )
                job.finished.wait(self.poll_interval_s)
            if job.error is not None:
                raise RuntimeError(self._failure(job.error)) from job.error
        finally:
            if not job.finished.is_set():
                if workers:
                    workers.stop()
                else:
                    job.cancel()
            store.delete_folder(folder)


class _Job:
    """A pipeline run in a thread: its runner's result once submitted, the error it ended with, whether it has.

    ``finished`` is an event rather than the thread's ``is_alive()``: on Python 3.11 an exception
    raised by a signal handler during ``Thread.join`` (a terminated Dagster run's interrupt) marks
    the thread stopped while it runs, and the job would be left running.
    """

    def __init__(self, pipeline: beam.Pipeline):
        self.pipeline = pipeline
        self.result: PipelineResult | None = None
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._cancelled = False
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            result = self.pipeline.run()  # a remote runner returns once the job is accepted; the local one at its end
            with self._lock:
                self.result, cancel_now = result, self._cancelled
            if cancel_now:
                result.cancel()
                return
            result.wait_until_finish()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the collecting thread
            if not self._cancelled:
                self.error = exc
        finally:
            self.finished.set()

    def cancel(self) -> None:
        """Cancel the remote job (or, if it is still being submitted, as soon as it is accepted)."""
        with self._lock:
            self._cancelled, result = True, self.result
        if result is not None:
            result.cancel()
