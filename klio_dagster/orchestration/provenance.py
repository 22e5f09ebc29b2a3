"""What each materialisation was made from, in the tags Dagster's staleness reads.

Every materialisation records, for each asset it depends on, the data version
it read and a pointer to that input's materialisation (its storage ID), as
Dagster records them for its own outputs. The UI's "Unsynced" then agrees
with the planner, which reads the same facts from the data version
(:mod:`klio_dagster.core.versions`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dagster import AssetExecutionContext, AssetKey, DagsterEventType

from klio_dagster.core.features import AUDIO, Feature
from klio_dagster.core.graph import FeatureGraph
from klio_dagster.orchestration.compat import (
    DATA_VERSION_TAG,
    DEFAULT_DATA_VERSION,
    NULL_DATA_VERSION,
    NULL_EVENT_POINTER,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)
from klio_dagster.planning.planner import FeatureLineage


def recorded_inputs(graph: FeatureGraph, lineage: Mapping[str, FeatureLineage], track: str, features: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """The recorded data versions of the stored inputs that computing ``features`` for ``track`` reads."""
    computed = set(features)
    parents = dict.fromkeys(p for f in computed for p in graph.stored_inputs(f) if p not in computed)
    return tuple((p, lineage[p].data_versions[track]) for p in parents if track in lineage[p].data_versions)


def input_tags(versions: Mapping[str, str], pointers: Mapping[str, int | None]) -> dict[str, str]:
    """Dagster's input provenance tags: per input asset, its data version and its materialisation's storage ID."""
    tags: dict[str, str] = {}
    for name, version in versions.items():
        key = AssetKey.from_user_string(name)
        pointer = pointers.get(name)
        tags[get_input_data_version_tag(key)] = version
        tags[get_input_event_pointer_tag(key)] = str(pointer) if pointer is not None else NULL_EVENT_POINTER
    return tags


class InputPointers:
    """Storage IDs of the materialisations a run's outputs were made from, looked up once per (input, track).

    Inputs recorded before the run come from the lineage it planned with; an
    input computed in the run is looked up right after its materialisation is
    stored (Dagster stores an event before the step's generator resumes).
    """

    def __init__(self, context: AssetExecutionContext, lineage: Mapping[str, FeatureLineage]):
        self._context, self._lineage = context, lineage
        self._found: dict[tuple[str, str], int | None] = {}
        self._other: dict[tuple[AssetKey, str | None], tuple[str, int | None]] = {}

    def recorded(self, feature: str, track: str) -> None:
        """Note that ``feature`` was just recorded for ``track`` in this run."""
        ids = self._context.instance.event_log_storage.get_latest_storage_id_by_partition(
            AssetKey(feature), DagsterEventType.ASSET_MATERIALIZATION, partitions={track}
        )
        self._found[(feature, track)] = ids.get(track)

    def recorded_many(self, feature: str, tracks: list[str]) -> None:
        """:meth:`recorded` for many tracks of ``feature``, in one query."""
        ids = self._context.instance.event_log_storage.get_latest_storage_id_by_partition(
            AssetKey(feature), DagsterEventType.ASSET_MATERIALIZATION, partitions=set(tracks)
        )
        self._found.update({(feature, t): ids.get(t) for t in tracks})

    def pointer(self, feature: str, track: str) -> int | None:
        if (feature, track) in self._found:
            return self._found[(feature, track)]
        record = self._lineage.get(feature)
        return record.storage_ids.get(track) if record else None

    def tags_for(self, graph: FeatureGraph, feature: Feature, track: str, versions: Mapping[str, str]) -> dict[str, str]:
        """All input provenance tags of ``feature``'s materialisation for ``track``: its features, audio and plain deps."""
        tags = input_tags(versions, {p: self.pointer(p, track) for p in versions})
        if graph.reads_audio(feature.name):
            # Registered sources record no event (see docs/architecture.md): Dagster's own default for them.
            tags.update(input_tags({AUDIO: DEFAULT_DATA_VERSION.value}, {}))
        for dep in feature.deps:
            tags.update(self._plain_dep_tags(AssetKey.from_coercible(dep), track))
        return tags

    def _plain_dep_tags(self, key: AssetKey, track: str) -> dict[str, str]:
        graph = self._context.job_def.asset_layer.asset_graph
        partition = track if graph.has(key) and graph.get(key).is_partitioned else None
        if (key, partition) not in self._other:
            record = self._context.instance.get_latest_data_version_record(key, partition_key=partition)
            version = (record.asset_materialization or record.asset_observation).tags.get(DATA_VERSION_TAG) if record else None
            external = graph.has(key) and graph.get(key).is_external
            fallback = DEFAULT_DATA_VERSION if external or record else NULL_DATA_VERSION
            self._other[(key, partition)] = (version or fallback.value, record.storage_id if record else None)
        version, pointer = self._other[(key, partition)]
        key_name = key.to_user_string()
        return input_tags({key_name: version}, {key_name: pointer})
