"""Dagster resources: the feature store and the executor choice."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from klio_dagster.executors.in_process import InProcessExecutor, TrackExecutor
from klio_dagster.storage.stores import FeatureStore, open_store


def local_default(value: str, variable: str) -> str:
    """``value``, else the environment ``variable`` now, else its folder under ``./data`` (``$KLIO_DATA``)."""
    if value:
        return value
    if os.environ.get(variable):
        return os.environ[variable]
    folder = variable.removeprefix("KLIO_").lower()
    return str(Path(os.environ.get("KLIO_DATA") or "data").absolute() / folder)


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
    runner: str = Field(default="FnApiRunner", description="Beam runner: FnApiRunner (local) or DataflowRunner.")
    num_workers: int = Field(default=0, ge=0, description="Local Beam workers; 0 = one per core.")
    pipeline_args: list[str] = Field(default_factory=list, description="Extra Beam pipeline options.")
    native_threads: int = Field(
        default=1, ge=0, description="BLAS/OpenMP threads per track computation (each Beam worker, or in-process); 0 = no cap."
    )

    def executor_for(self, n_tracks: int) -> TrackExecutor:
        if self.mode == "in_process" or (self.mode == "auto" and n_tracks < self.beam_min_tracks):
            return InProcessExecutor(native_threads=self.native_threads)
        from klio_dagster.executors.beam import BeamExecutor  # Apache Beam is imported only by runs that use it

        return BeamExecutor(
            runner=self.runner,
            num_workers=self.num_workers,
            pipeline_args=list(self.pipeline_args),
            native_threads=self.native_threads,
        )
