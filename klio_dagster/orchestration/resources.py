"""Dagster resources: the feature store and the executor choice."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dagster import ConfigurableResource
from pydantic import Field

from klio_dagster.core.execution import DEFAULT_MAX_DURATION_S, TrackLimits
from klio_dagster.executors.in_process import InProcessExecutor, TrackExecutor
from klio_dagster.storage.sources import DEFAULT_MAX_SOURCE_BYTES, SourcePolicy
from klio_dagster.storage.stores import FeatureStore, open_store

if TYPE_CHECKING:
    from klio_dagster.executors.beam import SubmittedJob


def local_default(value: str, variable: str) -> str:
    """``value``, else the environment ``variable`` now, else its folder under ``./data`` (``$KLIO_DATA``)."""
    if value:
        return value
    if os.environ.get(variable):
        return os.environ[variable]
    return str(data_folder() / variable.removeprefix("KLIO_").lower())


def data_folder() -> Path:
    """``$KLIO_DATA``, else ``./data``: where unset local locations go."""
    return Path(os.environ.get("KLIO_DATA") or "data").absolute()


class FeatureStoreResource(ConfigurableResource):
    """Where feature outputs and source records live.

    ``uri`` is a local directory or ``gs://bucket/prefix``; GCS access goes
    through dagster-gcp's ``GCSResource`` for ``gcs_project`` (with the
    environment's default credentials).
    """

    uri: str = Field(
        default="",
        description="Local directory or gs://bucket/prefix (usually EnvVar('KLIO_STORE')); empty: $KLIO_STORE when "
        "used, else ./data/store.",
    )
    gcs_project: str | None = Field(default=None, description="GCP project of the GCS client (gs:// stores).")

    def get_store(self) -> FeatureStore:
        return open_store(local_default(self.uri, "KLIO_STORE"), self.gcs_project)


class FeatureExecutorResource(ConfigurableResource):
    """How a run computes its tracks: in-process, or as a Beam pipeline.

    With ``mode="auto"``, batches of at least ``beam_min_tracks`` tracks go
    to Beam (all cores) and smaller ones run in-process (no start-up cost).
    """

    mode: Literal["auto", "in_process", "beam"] = "auto"
    beam_min_tracks: int = Field(default=8, ge=1)
    runner: str = Field(
        default="FnApiRunner",
        description="Beam runner: FnApiRunner (local), PortableRunner (a job service: --job_endpoint) or DataflowRunner.",
    )
    num_workers: int = Field(default=0, ge=0, description="Local Beam workers; 0 = one per core.")
    pipeline_args: list[str] = Field(default_factory=list, description="Extra Beam pipeline options.")
    native_threads: int = Field(
        default=1, ge=0, description="BLAS/OpenMP threads per track computation (each Beam worker, or in-process); 0 = no cap."
    )

    def executor_for(
        self, n_tracks: int, run_id: str | None = None, on_submitted: Callable[[SubmittedJob], None] | None = None
    ) -> TrackExecutor:
        """The executor of a batch of ``n_tracks``; a Dataflow job is labelled with the Dagster ``run_id``.

        ``on_submitted`` is told of a remote job once its runner accepts it (see :class:`~klio_dagster.executors.beam.BeamExecutor`).
        """
        if self.mode == "in_process" or (self.mode == "auto" and n_tracks < self.beam_min_tracks):
            return InProcessExecutor(native_threads=self.native_threads)
        from klio_dagster.executors.beam import BeamExecutor  # Apache Beam is imported only by runs that use it

        return BeamExecutor(
            runner=self.runner,
            num_workers=self.num_workers,
            pipeline_args=list(self.pipeline_args),
            native_threads=self.native_threads,
            labels={"dagster-run-id": run_id} if run_id else {},
            on_submitted=on_submitted,
        )


class TrackSourcesResource(ConfigurableResource):
    """Which source files events may name, and what one track may cost a worker.

    A path typed to ``klio-dagster ingest`` is allowed anywhere; a ``uri`` in an
    event (local queue, Pub/Sub) only under ``allowed_roots``, after resolving
    symlinks and ``..``, and only a regular file of at most ``max_source_mb``.
    Anything else is dead-lettered with the reason.
    """

    allowed_roots: str = Field(
        default="",
        description="Comma-separated local folders and gs://bucket[/prefix] that events may name as sources (usually "
        "EnvVar('KLIO_ALLOWED_SOURCES')); empty: $KLIO_ALLOWED_SOURCES when used, else ./data/media.",
    )
    max_source_mb: int = Field(default=DEFAULT_MAX_SOURCE_BYTES // 2**20, ge=1, description="Largest source file read (MiB).")
    max_duration_s: float = Field(
        default=DEFAULT_MAX_DURATION_S, gt=0, description="Longer tracks fail alone (seconds); bounds a worker's memory."
    )

    def policy(self) -> SourcePolicy:
        roots = self.allowed_roots or os.environ.get("KLIO_ALLOWED_SOURCES") or str(data_folder() / "media")
        return SourcePolicy.from_setting(roots, max_bytes=self.max_source_mb * 2**20)

    def limits(self) -> TrackLimits:
        return TrackLimits(self.max_source_mb * 2**20, self.max_duration_s, self.policy())
