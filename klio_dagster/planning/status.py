"""Per-track status in the native tier: the state of every feature, from the event log."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from klio_dagster.core.features import AUDIO, Feature, library_versions
from klio_dagster.core.graph import FeatureGraph
from klio_dagster.core.versions import code_version_of, content_digest, digest_of
from klio_dagster.orchestration.compat import CODE_VERSION_TAG, get_input_data_version_tag
from klio_dagster.orchestration.tags import FAILED, PING_TAG, STATUS_TAG
from klio_dagster.planning.lineage import load_lineage
from klio_dagster.planning.planner import stale_cause, state_of
from klio_dagster.storage.registry import read_source_uri
from klio_dagster.storage.stores import FeatureStore

_RECENT_OBSERVATIONS = 20
#: Metadata left out of a status row: the UI's preview image.
_NOT_SHOWN = frozenset({"preview"})


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat() if timestamp else None


def stored_output(store: FeatureStore, feature: Feature, track: str, data_version: str | None) -> str:
    """What storage holds for one pair, against lineage: ``recorded``, ``absent``, ``differs`` or ``unrecorded``.

    ``differs``: the bytes are not the recorded output (written outside a recorded
    run); ``unrecorded``: an output lineage does not know (a crashed run's). Readers
    use neither: they read only the recorded output, checked against its digest.
    """
    try:
        data = store.read_bytes(feature.object_name(track))
    except FileNotFoundError:
        return "absent"
    if data_version is None:
        return "unrecorded"
    return "recorded" if content_digest(data) == digest_of(data_version) else "differs"


def _value(metadata: Mapping[str, Any], key: str) -> Any:
    entry = metadata.get(key)
    return getattr(entry, "value", entry)


def version_changes(graph: FeatureGraph, feature: Feature, metadata: Mapping[str, Any], input_versions: Mapping[str, str]) -> list[str]:
    """What changed between the version that made an output and ``feature``'s current one.

    ``metadata`` is the output's provenance (code version, params, decode, libraries,
    ephemeral inputs), ``input_versions`` the data versions of the stored inputs it read.
    """
    changes: list[str] = []
    old_code = _value(metadata, "code_version")
    if old_code is not None and str(old_code) != feature.code_version:
        changes.append(f"code version {old_code} -> {feature.code_version}")
    for label, old, new in (
        ("parameter", _value(metadata, "params") or {}, dict(feature.params)),
        ("decode setting", _value(metadata, "decode") or {}, feature.decode.describe() if feature.wants_audio else {}),
    ):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changes.append(f"{label} {key} {old.get(key)} -> {new.get(key)}")
    libraries = _value(metadata, "libraries") or {}
    for name, now in library_versions(feature.libraries).items():
        if libraries.get(name) != now:
            changes.append(f"library {name} {libraries.get(name)} -> {now}")
    for parent in feature.inputs:
        upstream = graph[parent]
        if upstream.ephemeral:
            recorded = (_value(metadata, "ephemeral_inputs") or {}).get(parent)
        else:
            recorded = input_versions.get(parent)
            recorded = code_version_of(recorded) if recorded else None
        if recorded is not None and recorded != upstream.version:
            changes.append(f"input {parent!r} is now version {upstream.version} (was {recorded})")
    return changes


def track_status(instance: DagsterInstance, graph: FeatureGraph, store: FeatureStore, track: str) -> list[dict[str, Any]]:
    """One row per feature (``audio`` first): state, code version, run, time, URI, what storage holds, metadata, last error and ping."""
    source = read_source_uri(store, track)
    rows: list[dict[str, Any]] = [
        {"feature": AUDIO, "state": "materialized" if source else "missing", "code_version": None,
         "run_id": None, "timestamp": None, "uri": source}
    ]
    lineage = load_lineage(instance, graph.names, [track])
    for feature in graph:
        records_filter = AssetRecordsFilter(asset_key=AssetKey(feature.name), asset_partitions=[track])
        materialized = instance.fetch_materializations(records_filter, limit=1).records
        observations = instance.fetch_observations(records_filter, limit=_RECENT_OBSERVATIONS).records
        failure = next((o for o in observations if o.asset_observation and o.asset_observation.tags.get(STATUS_TAG) == FAILED), None)
        ping = next((o for o in observations if o.asset_observation and PING_TAG in o.asset_observation.tags), None)
        row: dict[str, Any] = {"feature": feature.name, "state": state_of(graph, lineage, feature.name, track),
                               "code_version": None, "run_id": None, "timestamp": None, "uri": None,
                               "stored": stored_output(store, feature, track, lineage[feature.name].data_versions.get(track))}
        if materialized:
            record = materialized[0]
            m = record.asset_materialization
            if row["state"] == "stale":
                cause = stale_cause(graph, lineage, feature.name, track) or ""
                inputs = {p: m.tags.get(get_input_data_version_tag(AssetKey(p))) for p in feature.inputs} if m else {}
                changes = (
                    version_changes(graph, feature, m.metadata, {p: v for p, v in inputs.items() if v})
                    if m and cause.startswith("made by version") else []
                )
                row["why"] = f"{cause}: {'; '.join(changes)}" if changes else cause
            row.update(
                code_version=m.tags.get(CODE_VERSION_TAG) if m else None,
                run_id=record.run_id,
                timestamp=_iso(record.timestamp),
                uri=m.metadata["uri"].value if m and "uri" in m.metadata else None,
                metadata={k: v.value for k, v in m.metadata.items() if k not in _NOT_SHOWN} if m else {},
            )
        if failure and (not materialized or failure.storage_id > materialized[0].storage_id):
            row.update(state=FAILED, run_id=failure.run_id, timestamp=_iso(failure.timestamp),
                       error=failure.asset_observation.metadata["error"].value)
        if ping:
            row.update(last_ping=_iso(ping.timestamp), ping_decision=ping.asset_observation.tags[PING_TAG])
        rows.append(row)
    return rows
