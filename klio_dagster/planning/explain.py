"""Provenance of one (feature, track): what made its recorded output, down to the source file.

Each materialisation records its own provenance in its metadata (code
version, parameters, decode settings, library versions, executor, pipeline
job, host, compute seconds, URI) and, in Dagster's input tags, the data
version and the storage ID of the very materialisation of each input it was
made from. :func:`explain` follows those pointers, so the inputs shown are
the ones that output was made from, not whatever is latest now.
"""

from __future__ import annotations

from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, EventLogRecord

from klio_dagster.core.features import AUDIO
from klio_dagster.core.graph import FeatureGraph
from klio_dagster.errors import InvalidRequest
from klio_dagster.orchestration.compat import (
    DATA_VERSION_TAG,
    NULL_EVENT_POINTER,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)
from klio_dagster.planning.lineage import load_lineage
from klio_dagster.planning.planner import stale_cause, state_of

#: Metadata shown as it is, in this order.
_FIELDS = (
    "code_version", "version", "params", "decode", "libraries", "executor", "pipeline_job", "host",
    "compute_s", "audio_s", "sample_rate_hz", "duration_s", "bytes", "uri", "source_uri", "ephemeral_inputs",
    "input_data_versions",
)
_DATA_VERSION_PREFIX = get_input_data_version_tag(AssetKey("x"))[:-1]


def explain(instance: DagsterInstance, graph: FeatureGraph, feature: str, track: str) -> dict[str, Any]:
    """The provenance of the latest recorded output of ``feature`` for ``track``, inputs included, recursively."""
    graph.check_names([feature])
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(feature), asset_partitions=[track]), limit=1
    ).records
    if not records:
        raise InvalidRequest(
            f"{feature!r} has no recorded output for track {track!r}: "
            f"`klio-dagster materialize {feature} --tracks {track}` makes one"
        )
    report = _node(instance, records[0], feature, track)
    lineage = load_lineage(instance, [*graph.with_ancestors([feature]), *graph.external_names], [track])
    report["state"] = state_of(graph, lineage, feature, track)
    if report["state"] == "stale":
        report["why"] = stale_cause(graph, lineage, feature, track)
    return report


def _node(instance: DagsterInstance, record: EventLogRecord, feature: str, track: str) -> dict[str, Any]:
    m = record.asset_materialization
    metadata = {k: v.value for k, v in m.metadata.items()} if m else {}
    node: dict[str, Any] = {
        "feature": feature,
        "track": track,
        "data_version": m.tags.get(DATA_VERSION_TAG) if m else None,
        "run_id": record.run_id,
        "recorded_at": record.timestamp,
        "storage_id": record.storage_id,
    }
    node.update({k: metadata[k] for k in _FIELDS if k in metadata})
    node["inputs"] = [_input(instance, m.tags, key, track) for key in _input_keys(m.tags)] if m else []
    return node


def _input_keys(tags: dict[str, str]) -> list[str]:
    return sorted(t[len(_DATA_VERSION_PREFIX):] for t in tags if t.startswith(_DATA_VERSION_PREFIX))


def _input(instance: DagsterInstance, tags: dict[str, str], name: str, track: str) -> dict[str, Any]:
    key = AssetKey.from_user_string(name)
    version = tags[get_input_data_version_tag(key)]
    pointer = tags.get(get_input_event_pointer_tag(key), NULL_EVENT_POINTER)
    if name == AUDIO:
        return {"feature": AUDIO, "track": track, "data_version": version, "inputs": []}
    found = []
    if pointer != NULL_EVENT_POINTER:
        found = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, storage_ids=[int(pointer)]), limit=1
        ).records
    if not found:
        return {"feature": name, "track": track, "data_version": version, "inputs": [],
                "note": "its materialisation is no longer in the event log"}
    return _node(instance, found[0], name, track)


def describe(report: dict[str, Any], indent: int = 0) -> list[str]:
    """``report`` as indented lines, for people."""
    pad = "  " * indent
    head = f"{pad}{report['feature']} / {report['track']}"
    if indent == 0 and "state" in report:
        head += f"  [{report['state']}{': ' + report['why'] if report.get('why') else ''}]"
    lines = [head, f"{pad}  data version: {report.get('data_version')}"]
    if report["feature"] != AUDIO:
        for field in ("run_id", *_FIELDS):
            if report.get(field) not in (None, {}, ""):
                lines.append(f"{pad}  {field}: {report[field]}")
    if report.get("note"):
        lines.append(f"{pad}  ({report['note']})")
    for child in report.get("inputs", []):
        lines.append(f"{pad}  from:")
        lines.extend(describe(child, indent + 2))
    return lines
