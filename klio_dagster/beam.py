"""Running ``compute_track`` over many tracks as one Apache Beam pipeline.

Locally the pipeline runs on Beam's ``FnApiRunner`` with one SDK worker
process per core; in production the same pipeline runs on Dataflow. Each
worker writes a track's results as one small JSON object under a run
folder of the feature store; the launching step polls that folder, so it
records materialisations while the pipeline is still computing (and the
same mechanism works for remote runners, where the store is on GCS).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from threadpoolctl import threadpool_limits

from .execution import PairResult, TrackTask, compute_track
from .features import FeatureGraph
from .storage import FeatureStore


LOCAL_RUNNER = "FnApiRunner"
DATAFLOW_RUNNER = "DataflowRunner"
_RUNS_FOLDER = "_runs"


class _ComputeTrack(beam.DoFn):
    def __init__(self, graph: FeatureGraph, store: FeatureStore, results_folder: str, native_threads: int):
        self.graph, self.store, self.results_folder = graph, store, results_folder
        self.native_threads = native_threads

    def setup(self) -> None:
        if self.native_threads:
            # Applies to the whole worker process until it exits.
            threadpool_limits(limits=self.native_threads)

    def process(self, task: TrackTask):
        results = compute_track(task, self.graph, self.store)
        payload = json.dumps([r.to_dict() for r in results], default=str).encode()
        self.store.write_bytes(f"{self.results_folder}/{task.track_id}.json", payload)
        yield len(results)


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
        ``"FnApiRunner"`` (local, multi-processing) or ``"DataflowRunner"``.
    num_workers : int
        Local SDK worker processes; 0 means one per core.
    pipeline_args : list of str
        Extra Beam pipeline options (``--project=...``, ``--region=...``, ...).
    poll_interval_s : float
        How often the results folder is listed while the pipeline runs.
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

    def _pipeline(self) -> beam.Pipeline:
        if self.runner == LOCAL_RUNNER:
            from apache_beam.runners.portability.fn_api_runner import FnApiRunner

            workers = self.num_workers or multiprocessing.cpu_count()
            options = PipelineOptions(
                self.pipeline_args,
                direct_running_mode="multi_processing",
                direct_num_workers=workers,
                default_sdk_harness_log_level="ERROR",
            )
            return beam.Pipeline(runner=FnApiRunner(), options=options)
        if self.runner == DATAFLOW_RUNNER:
            return beam.Pipeline(runner=DATAFLOW_RUNNER, options=PipelineOptions(self.pipeline_args))
        raise ValueError(f"unknown Beam runner {self.runner!r}: use {LOCAL_RUNNER!r} or {DATAFLOW_RUNNER!r}")

    def run(self, tasks: Sequence[TrackTask], graph: FeatureGraph, store: FeatureStore) -> Iterator[list[PairResult]]:
        if self.runner == DATAFLOW_RUNNER and not store.root_uri.startswith("gs://"):
            raise ValueError("Dataflow workers cannot reach a local feature store: set KLIO_STORE to gs://bucket/prefix")
        folder = f"{_RUNS_FOLDER}/{uuid.uuid4().hex}"
        pipeline = self._pipeline()
        (
            pipeline
            | "Tracks" >> beam.Create(_spread(tasks))
            | "Spread" >> beam.Reshuffle()
            | "Compute" >> beam.ParDo(_ComputeTrack(graph, store, folder, self.native_threads))
        )
        errors: list[BaseException] = []

        def run_pipeline() -> None:
            try:
                pipeline.run().wait_until_finish()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(exc)

        thread = threading.Thread(target=run_pipeline, name="klio-beam-pipeline", daemon=True)
        thread.start()
        seen: set[str] = set()
        try:
            while True:
                finished = not thread.is_alive()
                for name in sorted(store.list_names(folder) - seen):
                    seen.add(name)
                    payload = json.loads(store.read_bytes(f"{folder}/{name}"))
                    yield [PairResult(**r) for r in payload]
                if finished:
                    break
                thread.join(self.poll_interval_s)
            if errors:
                raise RuntimeError(f"the Beam pipeline failed: {errors[0]}") from errors[0]
        finally:
            store.delete_folder(folder)
