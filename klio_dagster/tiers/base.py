"""What a tier is: where a catalogue's tracks and per-(feature, track) state live.

A :class:`Tier` is chosen when a code location is defined (it decides the
assets' partitions); :meth:`Tier.open` binds it to an instance and a feature
store as a :class:`Catalogue`, which every command, sensor and feature step
asks about tracks, lineage and outcomes. The planner, the executors and the
feature code are the same in every tier.

- :class:`~klio_dagster.tiers.native.NativeTier`: every track is a Dagster partition and every
  (feature, track) a materialisation in the event log. Dagster's UI shows each track; comfortable
  up to about 100,000 tracks.
- :class:`~klio_dagster.tiers.ledger.LedgerTier`: tracks and per-(feature, track) state in an indexed
  table (the ledger), assets partitioned by a few thousand track shards; for 1 to 100 million tracks.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    DagsterEventType,
    DagsterInstance,
    EventLogRecord,
    PartitionKeyRange,
    PartitionsDefinition,
)

from klio_dagster.core.execution import PairResult
from klio_dagster.core.features import Feature
from klio_dagster.core.graph import FeatureGraph
from klio_dagster.core.tracks import validate_track_ids
from klio_dagster.planning.estimate import FeatureCost
from klio_dagster.planning.planner import FeatureLineage, Pair, Plan
from klio_dagster.storage.registry import SourceRecord
from klio_dagster.storage.sources import normalize_source_uri
from klio_dagster.storage.stores import FeatureStore

if TYPE_CHECKING:
    from klio_dagster.orchestration.runs import RunOutcome


class Recorder(ABC):
    """Records a feature step's outcomes: yields what Dagster must store, writes what the tier keeps itself.

    A recorder that writes in bulk writes at least every :attr:`flush_interval_s` seconds
    (:meth:`flush_due`), so a kill loses little and a run's progress shows as it goes.
    """

    #: The longest a recorder keeps results before it writes them, seconds.
    flush_interval_s = 2.0

    def __init__(self) -> None:
        self._flushed_at = time.monotonic()

    def flush_due(self) -> bool:
        """The interval has passed since the last flush (which :meth:`flush` implementations mark with :meth:`flushed`)."""
        return time.monotonic() - self._flushed_at >= self.flush_interval_s

    def flushed(self) -> None:
        self._flushed_at = time.monotonic()

    @abstractmethod
    def success(self, result: PairResult, feature: Feature, read_later: bool) -> Iterator[Any]:
        """One computed pair (``read_later``: a feature computed later in this run reads it)."""

    @abstractmethod
    def failure(self, feature: str, track: str, error: str) -> Iterator[Any]:
        """One failed pair."""

    def flush(self) -> None:
        """Make what was recorded so far durable (before its output events are announced)."""

    def finish(self) -> Iterator[Any]:
        """The step's last events, once every pair is recorded."""
        self.flush()
        return iter(())


class Catalogue(ABC):
    """A tier bound to an instance and a feature store: what commands, sensors and steps ask."""

    def __init__(self, tier: Tier, instance: DagsterInstance, store: FeatureStore):
        self.tier, self.instance, self.store = tier, instance, store

    def partition_keys_in_range(self, start: str, end: str) -> list[str]:
        """The partition keys from ``start`` to ``end`` (a run launched for a range)."""
        return self.tier.partitions_def.get_partition_keys_in_range(
            PartitionKeyRange(start, end), dynamic_partitions_store=self.instance
        )

    # Tracks
    def ingest(self, sources: Mapping[str, str], on_recorded: Callable[[], None] | None = None) -> list[str]:
        """Register tracks: validate every ID first (nothing is written if one is invalid), normalise their
        sources, record them, then register the tracks. Returns the track IDs in the order given."""
        track_ids = validate_track_ids(sources)
        self.register({t: normalize_source_uri(sources[t]) for t in track_ids}, on_recorded=on_recorded)
        return track_ids

    @abstractmethod
    def register(
        self, sources: Mapping[str, str], *, from_event: bool = False, on_recorded: Callable[[], None] | None = None
    ) -> list[str]:
        """Record the sources of valid, normalised track IDs and register the tracks; the ones that were new."""

    @abstractmethod
    def register_recorded(self, track_ids: Sequence[str]) -> list[str]:
        """Register tracks whose sources are recorded already (idempotent); the ones that were new."""

    @abstractmethod
    def unregistered(self, track_ids: Sequence[str]) -> list[str]:
        """The tracks of ``track_ids`` that are not registered, in order (never a listing of the catalogue for a few)."""

    @abstractmethod
    def with_sources(self, track_ids: Sequence[str]) -> set[str]:
        """The tracks of ``track_ids`` that have a registered source."""

    @abstractmethod
    def source(self, track_id: str) -> SourceRecord | None:
        """One track's registered source."""

    def task_sources(self, track_ids: Sequence[str]) -> dict[str, SourceRecord] | None:
        """Sources to hand to the executor with the tasks; ``None``: workers read them from the feature store."""
        return None

    @abstractmethod
    def track_pages(self, page_size: int) -> Iterator[list[str]]:
        """Every registered track, ``page_size`` at a time (keyset pages: memory stays flat)."""

    @abstractmethod
    def tracks_of_partitions(self, keys: Sequence[str]) -> list[str]:
        """The tracks a run over these partitions of the features' assets is for."""

    # Lineage and outcomes
    @abstractmethod
    def lineage(self, features: Sequence[str], tracks: Sequence[str] | None, *, pointers: bool = False) -> dict[str, FeatureLineage]:
        """Latest recorded state of ``features`` for ``tracks`` (``None``: all tracks).

        ``pointers``: also what the tier's recorder needs to point at each input's record.
        """

    def catalogue_lineage(self, features: Sequence[str]) -> Callable[[Sequence[str]], dict[str, FeatureLineage]]:
        """A reader of ``features``' lineage, page by page, for a request over the whole catalogue (``--all-tracks``).

        Each page as :meth:`lineage` reads it, unless the tier can make pages cheaper by reading
        something of the whole catalogue once, when the request starts.
        """
        return lambda tracks: self.lineage(features, tracks)

    @abstractmethod
    def past_costs(self, features: Sequence[str]) -> dict[str, FeatureCost]:
        """What recent outputs of ``features`` cost to compute (for a plan's estimate)."""

    @abstractmethod
    def record_pings(self, plan: Plan) -> list[Pair]:
        """Record that the plan was walked (each pair's decision), computing nothing; the pairs."""

    @property
    def pair_events(self) -> frozenset[DagsterEventType]:
        """The events a run yields one per pair: progress counts them as they come."""
        return frozenset({DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION})

    def pairs_recorded_by(self, run_id: str) -> int | None:
        """How many pairs the run has recorded so far without yielding them as :attr:`pair_events`, or ``None``
        if it records none that way: progress asks, every second, while the run runs."""
        return None

    @abstractmethod
    def run_outcome(self, run_id: str) -> RunOutcome:
        """What a finished run recorded: computed pairs, failed pairs with errors, step errors."""

    @abstractmethod
    def track_status(self, graph: FeatureGraph, track: str) -> list[dict[str, Any]]:
        """One row per feature of one track (``audio`` first), as ``klio-dagster status`` shows them."""

    @abstractmethod
    def explain(self, graph: FeatureGraph, feature: str, track: str) -> dict[str, Any]:
        """The provenance of the latest recorded output of ``feature`` for ``track``, inputs included."""

    @abstractmethod
    def recorder(self, context: AssetExecutionContext, graph: FeatureGraph, lineage: Mapping[str, FeatureLineage]) -> Recorder:
        """The recorder of one feature step."""

    @abstractmethod
    def tracks_of_materialization(self, record: EventLogRecord) -> list[str]:
        """The tracks one materialisation of a feature asset stands for (top-down reads them)."""

    def close(self) -> None:
        """Release connections."""


class Tier(ABC):
    """How a code location's catalogue is partitioned and where its per-track state lives."""

    name: str

    @property
    @abstractmethod
    def partitions_def(self) -> PartitionsDefinition:
        """The partitions of every feature asset (and ``audio``)."""

    @abstractmethod
    def partitions_per_run(self, tracks_per_run: int) -> int:
        """Partitions per backfill run so that a run holds about ``tracks_per_run`` tracks."""

    def check_specs(self, graph: FeatureGraph) -> list[AssetCheckSpec]:
        """Asset checks the tier adds to every feature."""
        return []

    @abstractmethod
    def open(self, instance: DagsterInstance, store: FeatureStore) -> Catalogue:
        """This tier bound to ``instance`` and ``store``."""
