"""Moving a native instance's history into the ledger tier, in one command (``klio-dagster migrate-to-ledger``).

Everything the ledger tier answers from is copied: every registered track with
its source, and per (feature, track) the latest materialisation (data
version, code version, URI, run, compute seconds, metadata and provenance,
with the event log's time), the latest failure and the latest ping. The event
log is read page by page in storage order and each page is written in one
transaction, later records replacing earlier ones, so memory stays flat and
running it again is harmless. The event log is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, EventLogRecord

from klio_dagster.core.graph import FeatureGraph
from klio_dagster.ledger import Failed, Ledger, Recorded, Source
from klio_dagster.orchestration.compat import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    dynamic_partition_pages,
    get_input_data_version_tag,
)
from klio_dagster.orchestration.partitions import TRACKS_PARTITIONS_NAME
from klio_dagster.orchestration.tags import FAILED, PING_TAG, STATUS_TAG
from klio_dagster.storage.registry import read_source_record
from klio_dagster.storage.stores import FeatureStore
from klio_dagster.tiers.ledger import NOT_KEPT, PROVENANCE

#: Records read (and written) at a time.
PAGE = 1_000


@dataclass
class Migrated:
    """What a migration copied: tracks, tracks without a source record, and per feature its pairs, failures, pings."""

    tracks: int = 0
    without_source: list[str] = field(default_factory=list)
    pairs: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    pings: dict[str, int] = field(default_factory=dict)


def _value(entry: Any) -> Any:
    return getattr(entry, "value", entry)


def _recorded(record: EventLogRecord, graph: FeatureGraph) -> tuple[Recorded, tuple[str, str], dict[str, Any]]:
    m = record.asset_materialization
    feature = m.asset_key.path[-1]
    metadata = {k: _value(v) for k, v in m.metadata.items()}
    inputs = metadata.get("input_data_versions") or {
        p: m.tags[get_input_data_version_tag(AssetKey(p))]
        for p in graph.stored_inputs(feature)
        if get_input_data_version_tag(AssetKey(p)) in m.tags
    }
    kept = {k: v for k, v in metadata.items() if k not in NOT_KEPT and k != "full_resolution"}
    if inputs:
        kept["input_data_versions"] = inputs
    version = m.tags.get(CODE_VERSION_TAG, "")
    row = Recorded(
        feature, m.partition, m.tags.get(DATA_VERSION_TAG, ""), version, str(metadata.get("uri") or ""), record.run_id,
        float(metadata["compute_s"]) if metadata.get("compute_s") is not None else None, kept, at=record.timestamp,
    )
    return row, (feature, version), {k: v for k, v in metadata.items() if k in PROVENANCE}


def migrate_to_ledger(
    instance: DagsterInstance,
    store: FeatureStore,
    graph: FeatureGraph,
    ledger: Ledger,
    on_page: Callable[[str, int], None] | None = None,
) -> Migrated:
    """Copy the native instance's tracks, sources and the latest state of every stored feature of ``graph`` into ``ledger``.

    ``on_page(what, n)`` is called after each page is written (a progress hook).
    """
    done = Migrated()
    for page in dynamic_partition_pages(instance, TRACKS_PARTITIONS_NAME, PAGE):
        sources: dict[str, Source] = {}
        for track in page:
            record = read_source_record(store, track)
            if record is None:
                done.without_source.append(track)
            else:
                sources[track] = Source(record.uri, record.from_event)
        ledger.register(sources)
        done.tracks += len(sources)
        if on_page:
            on_page("tracks", len(page))
    for feature in [*graph.names, *graph.external_names]:
        done.pairs[feature] = _copy_materializations(instance, graph, ledger, feature, on_page)
        done.failures[feature], done.pings[feature] = _copy_observations(instance, ledger, feature, on_page)
    return done


def _copy_materializations(instance, graph, ledger, feature, on_page) -> int:
    copied, cursor = 0, None
    while True:
        result = instance.fetch_materializations(AssetRecordsFilter(AssetKey(feature)), limit=PAGE, cursor=cursor, ascending=True)
        rows, versions = [], {}
        for record in result.records:
            if record.asset_materialization is None or record.asset_materialization.partition is None:
                continue
            row, key, provenance = _recorded(record, graph)
            rows.append(row)
            versions.setdefault(key, provenance)
        ledger.record_versions(versions)
        ledger.record(rows)
        copied += len(rows)
        if on_page:
            on_page(feature, len(rows))
        if not result.has_more:
            return copied
        cursor = result.cursor


def _copy_observations(instance, ledger, feature, on_page) -> tuple[int, int]:
    failures = pings = 0
    cursor = None
    while True:
        result = instance.fetch_observations(AssetRecordsFilter(AssetKey(feature)), limit=PAGE, cursor=cursor, ascending=True)
        failed, walked, times = [], [], []
        for record in result.records:
            o = record.asset_observation
            if o is None or o.partition is None:
                continue
            if o.tags.get(STATUS_TAG) == FAILED:
                error = _value(o.metadata.get("error")) or ""
                failed.append(Failed(feature, o.partition, record.run_id, str(error), at=record.timestamp))
            elif PING_TAG in o.tags:
                walked.append((feature, o.partition, o.tags[PING_TAG]))
                times.append(record.timestamp)
        ledger.record_failures(failed)
        ledger.record_pings(walked, times)
        failures, pings = failures + len(failed), pings + len(walked)
        if on_page:
            on_page(feature, len(failed) + len(walked))
        if not result.has_more:
            return failures, pings
        cursor = result.cursor
