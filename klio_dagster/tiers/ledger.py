"""The ledger tier: per-(feature, track) state in the ledger, Dagster assets partitioned by track shard.

For catalogues of 1 to 100 million tracks. Tracks and their sources are rows
of the ledger (:mod:`klio_dagster.ledger`), registered in bulk; each pair's
latest success, failure and ping are one row, written in bulk as a step
goes. Dagster sees a bounded set of partitions, track shards: each run
records one materialisation per (feature, shard) it touched, with counts of
the tracks it computed and failed and of the shard's current and failed
tracks, and one evaluation of the feature's ``shard_tracks`` check per
shard, which fails while tracks of that shard have failed. The UI shows
shard health at any catalogue size; per-track questions (``status``,
``explain``, the planner's lineage) are indexed ledger queries.

The same feature code, CLI, sensors and semantics as the native tier: the
planner reads the same data versions (code version, content digest, input
marks) from the ledger instead of the event log.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    DagsterEventType,
    DagsterInstance,
    EventLogRecord,
    StaticPartitionsDefinition,
)

from klio_dagster.core.execution import PairResult, provenance
from klio_dagster.core.features import AUDIO, Feature
from klio_dagster.core.graph import FeatureGraph
from klio_dagster.errors import InvalidRequest
from klio_dagster.ledger import (
    DEFAULT_SHARDS,
    Failed,
    Ledger,
    PairState,
    Recorded,
    Source,
    TrackPage,
    shard_key,
    shard_keys,
    shard_number,
    shard_of,
)
from klio_dagster.orchestration.compat import (
    CODE_VERSION_TAG,
    log_materialization_batch,
    report_failed_attempt,
    stores_event_batches,
)
from klio_dagster.orchestration.postgres import POSTGRES_URL_VARIABLE
from klio_dagster.orchestration.recording import plain
from klio_dagster.orchestration.runs import RunOutcome, read_outcome
from klio_dagster.planning.estimate import HISTORY, FeatureCost, cost_of
from klio_dagster.planning.planner import FeatureLineage, Pair, Plan, stale_cause, state_of
from klio_dagster.planning.status import stored_output, version_changes
from klio_dagster.storage.registry import SourceRecord
from klio_dagster.storage.stores import FeatureStore
from klio_dagster.tiers.base import Catalogue, Recorder, Tier

LEDGER_URL_VARIABLE = "KLIO_LEDGER_URL"
#: The check every feature gets in the ledger tier: fails for a shard while tracks of it have failed.
SHARD_CHECK = "shard_tracks"
#: What goes to the versions table once per version rather than into every pair's metadata.
PROVENANCE = frozenset({"code_version", "version", "params", "decode", "libraries"})
NOT_KEPT = PROVENANCE | {"uri", "compute_s", "preview"}
#: Results buffered before they are written (one transaction), at most (see also Recorder.flush_interval_s).
_FLUSH_ROWS = 5_000


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat() if timestamp else None


def default_ledger_url() -> str:
    """``KLIO_LEDGER_URL``; else the instance's Postgres (``KLIO_POSTGRES_URL``); else SQLite in ``DAGSTER_HOME``."""
    if url := os.environ.get(LEDGER_URL_VARIABLE):
        return url
    if url := os.environ.get(POSTGRES_URL_VARIABLE):
        return url
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / "data" / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'klio_ledger.sqlite'}"


class LedgerRecorder(Recorder):
    """Buffers a step's outcomes, writes them to the ledger in bulk, and ends with one event per (feature, shard)."""

    def __init__(self, catalogue: LedgerCatalogue, context: AssetExecutionContext, graph: FeatureGraph):
        super().__init__()
        self._catalogue, self._context, self._graph = catalogue, context, graph
        self._recorded: list[Recorded] = []
        self._failed: list[Failed] = []
        self._computed: dict[tuple[str, int], int] = defaultdict(int)
        self._failures: dict[tuple[str, int], int] = defaultdict(int)
        self._versions: dict[tuple[str, str], dict[str, Any]] = {}

    def success(self, result: PairResult, feature: Feature, read_later: bool) -> Iterator[Any]:
        metadata = {k: plain(v) for k, v in result.metadata.items() if k not in NOT_KEPT}
        if result.input_versions:
            metadata["input_data_versions"] = dict(result.input_versions)
        compute_s = result.metadata.get("compute_s")
        self._recorded.append(
            Recorded(result.feature, result.track_id, result.data_version or "", feature.version, result.uri or "",
                     self._context.run_id, float(compute_s) if compute_s is not None else None, metadata)
        )
        if (feature.name, feature.version) not in self._versions:
            self._versions[(feature.name, feature.version)] = {k: v for k, v in provenance(feature).items() if k in PROVENANCE}
        self._computed[(feature.name, self._catalogue.shard_of(result.track_id))] += 1
        self._flush_when_due()
        return iter(())

    def failure(self, feature: str, track: str, error: str) -> Iterator[Any]:
        self._failed.append(Failed(feature, track, self._context.run_id, error))
        self._failures[(feature, self._catalogue.shard_of(track))] += 1
        self._flush_when_due()
        return iter(())

    def _flush_when_due(self) -> None:
        if len(self._recorded) + len(self._failed) >= _FLUSH_ROWS or self.flush_due():
            self.flush()

    def flush(self) -> None:
        self.flushed()
        ledger = self._catalogue.ledger
        ledger.record_versions(self._versions)
        ledger.record(self._recorded)
        ledger.record_failures(self._failed)
        self._recorded, self._failed = [], []

    def finish(self) -> Iterator[Any]:
        self.flush()
        tier = self._catalogue.tier
        touched: dict[str, set[int]] = defaultdict(set)
        for feature, shard in [*self._computed, *self._failures]:
            touched[feature].add(shard)
        batched = stores_event_batches(self._context.instance)
        for feature in self._graph.order:
            if feature not in touched:
                continue
            version = self._graph[feature].version
            counts = self._catalogue.ledger.shard_counts(feature, version, touched[feature])
            materializations, checks = [], []
            for shard in sorted(touched[feature]):
                key = shard_key(shard, tier.shards)
                computed, failed, now = self._computed.get((feature, shard), 0), self._failures.get((feature, shard), 0), counts[shard]
                metadata = {
                    "tracks_computed": computed, "tracks_failed": failed,
                    "shard_tracks": now["tracks"], "shard_current": now["current"], "shard_failed": now["failed"],
                }
                if computed:
                    materializations.append(AssetMaterialization(
                        asset_key=feature, partition=key, metadata=metadata, tags={CODE_VERSION_TAG: version},
                        description=f"{key}: {computed} computed, {failed} failed; {now['current']} of its {now['tracks']} tracks current",
                    ))
                else:
                    report_failed_attempt(self._context, AssetKey(feature), key)
                checks.append(AssetCheckEvaluation(
                    asset_key=AssetKey(feature), check_name=SHARD_CHECK, passed=now["failed"] == 0, partition=key,
                    severity=AssetCheckSeverity.ERROR, metadata=metadata,
                    description=(
                        f"{now['failed']} tracks of {key} failed {feature}: `klio-dagster status TRACK` shows each one's error"
                        if now["failed"] else None
                    ),
                ))
            if batched:  # one write per feature (Postgres), as the native tier's successes
                log_materialization_batch(self._context, materializations)
            else:
                yield from materializations
            yield from checks


class LedgerCatalogue(Catalogue):
    """The ledger tier bound to an instance and a store, over its ledger."""

    tier: LedgerTier

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.tier.url or default_ledger_url(), self.tier.shards)

    def shard_of(self, track_id: str) -> int:
        return self.tier.shard_of(track_id)

    def close(self) -> None:
        if "ledger" in self.__dict__:
            self.ledger.close()

    # Tracks
    def register(
        self, sources: Mapping[str, str], *, from_event: bool = False, on_recorded: Callable[[], None] | None = None
    ) -> list[str]:
        new = self.ledger.register({t: Source(uri, from_event) for t, uri in sources.items()})
        if on_recorded:
            for _ in sources:
                on_recorded()
        return new

    def register_recorded(self, track_ids: Sequence[str]) -> list[str]:
        return []  # a track's source and its registration are one row

    def unregistered(self, track_ids: Sequence[str]) -> list[str]:
        known = self.ledger.known(track_ids)
        return [t for t in track_ids if t not in known]

    def with_sources(self, track_ids: Sequence[str]) -> set[str]:
        return self.ledger.known(track_ids)

    def source(self, track_id: str) -> SourceRecord | None:
        found = self.ledger.sources([track_id]).get(track_id)
        return SourceRecord(found.uri, found.from_event) if found else None

    def task_sources(self, track_ids: Sequence[str]) -> dict[str, SourceRecord]:
        return {t: SourceRecord(s.uri, s.from_event) for t, s in self.ledger.sources(track_ids).items()}

    def track_pages(self, page_size: int) -> Iterator[list[str]]:
        return self.ledger.track_pages(page_size)

    def tracks_of_partitions(self, keys: Sequence[str]) -> list[str]:
        try:
            shards = [shard_number(k, self.tier.shards) for k in keys]
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        return self.ledger.tracks_in_shards(shards)

    # Lineage and outcomes
    def lineage(self, features: Sequence[str], tracks: Sequence[str] | None, *, pointers: bool = False) -> dict[str, FeatureLineage]:
        names = list(dict.fromkeys(features))
        if isinstance(tracks, TrackPage):
            versions = self.ledger.data_versions_in_page(names, tracks)
        elif tracks is None:
            versions = {name: self.ledger.data_versions_between(name, "", "\U0010ffff") for name in names}
        else:
            versions = {name: self.ledger.data_versions(name, tracks) for name in names}
        return {name: FeatureLineage(data_versions=versions[name], storage_ids={}) for name in names}

    def past_costs(self, features: Sequence[str]) -> dict[str, FeatureCost]:
        costs = {name: cost_of(self.ledger.recent_measurements(name, HISTORY)) for name in features}
        return {name: cost for name, cost in costs.items() if cost is not None}

    def record_pings(self, plan: Plan) -> list[Pair]:
        walked = [(f, t, "compute") for f, t in plan.to_compute] + [(f, t, "skip") for f, t in plan.skipped]
        self.ledger.record_pings(walked)
        return [(f, t) for f, t, _ in walked]

    @property
    def pair_events(self) -> frozenset[DagsterEventType]:
        return frozenset()  # a run's events are per (feature, shard); its pairs are in the ledger

    def pairs_recorded_by(self, run_id: str) -> int | None:
        return self.ledger.count_of_run(run_id)

    def run_outcome(self, run_id: str) -> RunOutcome:
        outcome = read_outcome(self.instance, run_id)  # its step errors; its pairs are in the ledger
        computed, failed = self.ledger.run_results(run_id)
        outcome.computed = sorted(computed)
        outcome.failed = [{"feature": f, "track": t, "error": e or ""} for f, t, e in failed]
        return outcome

    def track_status(self, graph: FeatureGraph, track: str) -> list[dict[str, Any]]:
        source = self.source(track)
        rows: list[dict[str, Any]] = [
            {"feature": AUDIO, "state": "materialized" if source else "missing", "code_version": None,
             "run_id": None, "timestamp": None, "uri": source.uri if source else None}
        ]
        lineage = self.lineage(graph.names, [track])
        states = self.ledger.pairs_of_track(track)
        for feature in graph:
            pair = states.get(feature.name)
            row: dict[str, Any] = {"feature": feature.name, "state": state_of(graph, lineage, feature.name, track),
                                   "code_version": None, "run_id": None, "timestamp": None, "uri": None,
                                   "stored": stored_output(self.store, feature, track, lineage[feature.name].data_versions.get(track))}
            if pair is not None and pair.data_version:
                if row["state"] == "stale":
                    row["why"] = self._why(graph, feature, pair, lineage, track)
                row.update(code_version=pair.code_version, run_id=pair.run_id, timestamp=_iso(pair.recorded_at),
                           uri=pair.uri, metadata=self._metadata(pair))
            if pair is not None and pair.failed_last:
                row.update(state="failed", run_id=pair.failed_run_id, timestamp=_iso(pair.failed_at), error=pair.error)
            if pair is not None and pair.pinged_at:
                row.update(last_ping=_iso(pair.pinged_at), ping_decision=pair.ping_decision)
            rows.append(row)
        return rows

    def _metadata(self, pair: PairState) -> dict[str, Any]:
        """A pair's metadata as the native tier shows it: its version's provenance, its own metadata, URI, compute seconds."""
        metadata = {**self.ledger.provenance(pair.feature, pair.code_version or ""), **pair.metadata}
        metadata.update(uri=pair.uri, **({"compute_s": pair.compute_s} if pair.compute_s is not None else {}))
        return metadata

    def _why(self, graph: FeatureGraph, feature: Feature, pair: PairState, lineage: dict[str, FeatureLineage], track: str) -> str:
        cause = stale_cause(graph, lineage, feature.name, track) or ""
        if not cause.startswith("made by version"):
            return cause
        changes = version_changes(graph, feature, self._metadata(pair), pair.metadata.get("input_data_versions") or {})
        return f"{cause}: {'; '.join(changes)}" if changes else cause

    def explain(self, graph: FeatureGraph, feature: str, track: str) -> dict[str, Any]:
        graph.check_names([feature])
        pair = self.ledger.pair(feature, track)
        if pair is None or not pair.data_version:
            raise InvalidRequest(
                f"{feature!r} has no recorded output for track {track!r}: "
                f"`klio-dagster materialize {feature} --tracks {track}` makes one"
            )
        report = self._node(graph, pair)
        lineage = self.lineage([*graph.with_ancestors([feature]), *graph.external_names], [track])
        report["state"] = state_of(graph, lineage, feature, track)
        if report["state"] == "stale":
            report["why"] = stale_cause(graph, lineage, feature, track)
        return report

    def _node(self, graph: FeatureGraph, pair: PairState) -> dict[str, Any]:
        node: dict[str, Any] = {"feature": pair.feature, "track": pair.track_id, "data_version": pair.data_version,
                                "run_id": pair.run_id, "recorded_at": pair.recorded_at}
        node.update(self._metadata(pair))
        inputs = []
        for name, version in sorted((pair.metadata.get("input_data_versions") or {}).items()):
            parent = self.ledger.pair(name, pair.track_id)
            if parent is not None and parent.data_version == version:
                inputs.append(self._node(graph, parent))
            else:
                inputs.append({"feature": name, "track": pair.track_id, "data_version": version, "inputs": [],
                               "note": "recomputed since: the ledger keeps each pair's latest output only"})
        if pair.feature in graph.names and graph.reads_audio(pair.feature):
            source = self.source(pair.track_id)
            inputs.append({"feature": AUDIO, "track": pair.track_id, "data_version": None,
                           "source_uri": source.uri if source else None, "inputs": []})
        node["inputs"] = inputs
        return node

    def recorder(self, context: AssetExecutionContext, graph: FeatureGraph, lineage: Mapping[str, FeatureLineage]) -> Recorder:
        return LedgerRecorder(self, context, graph)

    def tracks_of_materialization(self, record: EventLogRecord) -> list[str]:
        if not record.partition_key or record.asset_key is None:
            return []
        shard = shard_number(record.partition_key, self.tier.shards)
        return self.ledger.recorded_by_run(record.asset_key.path[-1], record.run_id, shard)


@dataclass(frozen=True)
class LedgerTier(Tier):
    """Track shards as partitions, per-track state in the ledger.

    Parameters
    ----------
    shards : int
        Partitions of every feature asset. Fixed once tracks are registered (a track's shard is
        stored); 4,096 keeps each shard to 2,400 tracks at 10 million.
    url : str, optional
        The ledger's SQLAlchemy URL; default :func:`default_ledger_url` (``KLIO_LEDGER_URL``, else
        the instance's Postgres, else SQLite in ``DAGSTER_HOME``).
    shards_per_run : int
        Shards per run of a backfill launched from the UI.
    """

    shards: int = DEFAULT_SHARDS
    url: str | None = None
    shards_per_run: int = 16
    name: str = field(default="ledger", init=False)

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"shards={self.shards}: a ledger tier needs at least one shard")

    @cached_property
    def partitions_def(self) -> StaticPartitionsDefinition:
        return StaticPartitionsDefinition(shard_keys(self.shards))

    def shard_of(self, track_id: str) -> int:
        return shard_of(track_id, self.shards)

    def partitions_per_run(self, tracks_per_run: int) -> int:
        return self.shards_per_run

    def check_specs(self, graph: FeatureGraph) -> list[AssetCheckSpec]:
        return [
            AssetCheckSpec(
                SHARD_CHECK,
                asset=f.asset_key,
                description=(
                    f"Fails for a shard while tracks of it have failed {f.name} (their latest attempt): "
                    "the metadata counts the shard's tracks, current and failed."
                ),
            )
            for f in graph
        ]

    def open(self, instance: DagsterInstance, store: FeatureStore) -> LedgerCatalogue:
        return LedgerCatalogue(self, instance, store)


