"""The executor interface, and the in-process executor (small batches, lowest latency)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from threadpoolctl import threadpool_limits

from klio_dagster.core.execution import PairResult, TrackLimits, TrackTask, compute_track
from klio_dagster.core.graph import FeatureGraph
from klio_dagster.storage.stores import FeatureStore


class TrackExecutor(Protocol):
    """Runs ``compute_track`` over many tracks; yields each track's results as they finish."""

    def run(
        self, tasks: Sequence[TrackTask], graph: FeatureGraph, store: FeatureStore, limits: TrackLimits | None = None
    ) -> Iterator[list[PairResult]]: ...


@dataclass(frozen=True)
class InProcessExecutor:
    """Computes tracks one after another in the calling process: lowest latency for small batches.

    ``native_threads`` caps the BLAS/OpenMP pools while a track computes (0:
    no cap). Its default, 1, matches the Beam workers, so a track's outputs
    are bit-identical whichever executor computed them (a summation split
    over threads rounds differently).
    """

    native_threads: int = 1

    def run(
        self, tasks: Sequence[TrackTask], graph: FeatureGraph, store: FeatureStore, limits: TrackLimits | None = None
    ) -> Iterator[list[PairResult]]:
        for task in tasks:
            with threadpool_limits(limits=self.native_threads or None):
                results = compute_track(task, graph, store, limits)
            for result in results:
                if result.ok:
                    result.metadata["executor"] = "in_process"
            yield results
