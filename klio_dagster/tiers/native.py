"""The native tier: every track a ``tracks`` partition, every (feature, track) a materialisation.

Dagster's own event log is the lineage: the UI shows every track's every
feature, its staleness and history. Its limits are Dagster's (measured in
docs/architecture.md): recording is one event-log write per pair, and the UI
lists every partition on each asset page, comfortable up to about 100,000
tracks per asset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetObservation,
    DagsterEventType,
    DagsterInstance,
    EventLogRecord,
    PartitionsDefinition,
)

from klio_dagster.core.execution import PairResult
from klio_dagster.core.features import Feature
from klio_dagster.core.graph import FeatureGraph
from klio_dagster.orchestration.compat import (
    dynamic_partition_pages,
    log_materialization_batch,
    report_failed_attempt,
    stores_event_batches,
)
from klio_dagster.orchestration.partitions import (
    TRACKS_PARTITIONS_NAME,
    register_tracks,
    tracks_partitions,
    unregistered,
)
from klio_dagster.orchestration.provenance import InputPointers
from klio_dagster.orchestration.recording import failure_observation, materialization
from klio_dagster.orchestration.runs import RunOutcome, read_outcome
from klio_dagster.orchestration.tags import PING_TAG
from klio_dagster.planning.estimate import FeatureCost, past_costs
from klio_dagster.planning.explain import explain
from klio_dagster.planning.lineage import MaterializedFirst, load_lineage
from klio_dagster.planning.planner import FeatureLineage, Pair, Plan
from klio_dagster.planning.status import track_status
from klio_dagster.storage.registry import SourceRecord, read_source_record, record_sources, tracks_with_sources
from klio_dagster.storage.stores import FeatureStore
from klio_dagster.tiers.base import Catalogue, Recorder, Tier


class NativeRecorder(Recorder):
    """One materialisation per computed pair (with its input pointers), a failed attempt and observation per failure.

    Where the instance stores event batches (Postgres, with ``DAGSTER_EVENT_BATCH_SIZE`` set),
    successes are kept until the next flush (at least every :attr:`flush_interval_s`) and stored as one batch per feature, parents
    first, each batch's storage IDs read back in one query for the pointers of its
    children: about 20 times the pairs per second of one write per pair (S2 in
    docs/benchmarks.md). Elsewhere (SQLite) each is yielded and written at once.
    """

    def __init__(self, context: AssetExecutionContext, graph: FeatureGraph, lineage: Mapping[str, FeatureLineage]):
        super().__init__()
        self._context, self._graph = context, graph
        self._pointers = InputPointers(context, lineage)
        self._batched = stores_event_batches(context.instance)
        self._pending: dict[str, list[tuple[PairResult, Feature]]] = defaultdict(list)

    def success(self, result: PairResult, feature: Feature, read_later: bool) -> Iterator[Any]:
        if self._batched:
            self._pending[feature.name].append((result, feature))
            if self.flush_due():
                self.flush()
            return iter(())
        return self._one(result, feature, read_later)

    def _one(self, result: PairResult, feature: Feature, read_later: bool) -> Iterator[Any]:
        tags = self._pointers.tags_for(self._graph, feature, result.track_id, result.input_versions)
        yield materialization(result, feature, tags)
        if read_later:
            self._pointers.recorded(result.feature, result.track_id)

    def flush(self) -> None:
        self.flushed()
        for name in [n for n in self._graph.order if n in self._pending]:
            pending = self._pending.pop(name)
            log_materialization_batch(self._context, [
                materialization(r, f, self._pointers.tags_for(self._graph, f, r.track_id, r.input_versions)) for r, f in pending
            ])
            self._pointers.recorded_many(name, [r.track_id for r, _ in pending])

    def failure(self, feature: str, track: str, error: str) -> Iterator[Any]:
        report_failed_attempt(self._context, AssetKey(feature), track)
        yield failure_observation(feature, track, error)


class NativeCatalogue(Catalogue):
    """The native tier bound to an instance and a store."""

    def register(
        self, sources: Mapping[str, str], *, from_event: bool = False, on_recorded: Callable[[], None] | None = None
    ) -> list[str]:
        # A partition is added only once its source is recorded, so every partition has a source.
        record_sources(self.store, sources, on_recorded, from_event=from_event)
        return register_tracks(self.instance, list(sources))

    def register_recorded(self, track_ids: Sequence[str]) -> list[str]:
        return register_tracks(self.instance, track_ids)

    def unregistered(self, track_ids: Sequence[str]) -> list[str]:
        return unregistered(self.instance, track_ids)

    @property
    def pair_events(self) -> frozenset[DagsterEventType]:
        if stores_event_batches(self.instance):  # successes are stored in batches, not yielded; failures are yielded
            return frozenset({DagsterEventType.ASSET_OBSERVATION})
        return super().pair_events

    def pairs_recorded_by(self, run_id: str) -> int | None:
        if stores_event_batches(self.instance):
            return self.instance.get_run_stats(run_id).materializations  # the successes stored in batches so far
        return None

    def with_sources(self, track_ids: Sequence[str]) -> set[str]:
        return tracks_with_sources(self.store) & set(track_ids)

    def source(self, track_id: str) -> SourceRecord | None:
        return read_source_record(self.store, track_id)

    def track_pages(self, page_size: int) -> Iterator[list[str]]:
        return dynamic_partition_pages(self.instance, TRACKS_PARTITIONS_NAME, page_size)

    def tracks_of_partitions(self, keys: Sequence[str]) -> list[str]:
        return list(keys)

    def lineage(self, features: Sequence[str], tracks: Sequence[str] | None, *, pointers: bool = False) -> dict[str, FeatureLineage]:
        return load_lineage(self.instance, features, tracks, storage_ids=pointers)

    def catalogue_lineage(self, features: Sequence[str]) -> Callable[[Sequence[str]], dict[str, FeatureLineage]]:
        return MaterializedFirst(self.instance, features)

    def past_costs(self, features: Sequence[str]) -> dict[str, FeatureCost]:
        return past_costs(self.instance, features)

    def record_pings(self, plan: Plan) -> list[Pair]:
        walked = [(p, "compute") for p in plan.to_compute] + [(p, "skip") for p in plan.skipped]
        for (feature, track), decision in walked:
            self.instance.report_runless_asset_event(
                AssetObservation(feature, partition=track, metadata={PING_TAG: decision}, tags={PING_TAG: decision})
            )
        return [pair for pair, _ in walked]

    def run_outcome(self, run_id: str) -> RunOutcome:
        return read_outcome(self.instance, run_id)

    def track_status(self, graph: FeatureGraph, track: str) -> list[dict[str, Any]]:
        return track_status(self.instance, graph, self.store, track)

    def explain(self, graph: FeatureGraph, feature: str, track: str) -> dict[str, Any]:
        return explain(self.instance, graph, feature, track)

    def recorder(self, context: AssetExecutionContext, graph: FeatureGraph, lineage: Mapping[str, FeatureLineage]) -> Recorder:
        return NativeRecorder(context, graph, lineage)

    def tracks_of_materialization(self, record: EventLogRecord) -> list[str]:
        return [record.partition_key] if record.partition_key else []


class NativeTier(Tier):
    """Every track a partition of the shared ``tracks`` dynamic partitions; Dagster's event log holds the lineage."""

    name = "native"

    @property
    def partitions_def(self) -> PartitionsDefinition:
        return tracks_partitions

    def partitions_per_run(self, tracks_per_run: int) -> int:
        return tracks_per_run

    def open(self, instance: DagsterInstance, store: FeatureStore) -> NativeCatalogue:
        return NativeCatalogue(self, instance, store)
