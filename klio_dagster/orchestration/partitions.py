"""The shared ``tracks`` dynamic partitions, and registering tracks into them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from dagster import DagsterInstance, DynamicPartitionsDefinition

from klio_dagster.core.tracks import validate_track_ids
from klio_dagster.storage.registry import record_sources
from klio_dagster.storage.sources import normalize_source_uri
from klio_dagster.storage.stores import FeatureStore

TRACKS_PARTITIONS_NAME = "tracks"
tracks_partitions = DynamicPartitionsDefinition(name=TRACKS_PARTITIONS_NAME)

#: SQLite rejects very large inserts; this size is fast and safe.
PARTITION_ADD_CHUNK = 10_000
#: Up to this many tracks are looked up one by one (an indexed query each); more, with one listing.
LOOKUP_LIMIT = 1_000


def registered_tracks(instance: DagsterInstance) -> list[str]:
    """All track IDs known to the instance, in registration order (a listing of the whole catalogue)."""
    return list(instance.get_dynamic_partitions(TRACKS_PARTITIONS_NAME))


def unregistered(instance: DagsterInstance, track_ids: Sequence[str]) -> list[str]:
    """The tracks of ``track_ids`` the instance does not know, in order.

    A few are looked up one by one, so asking about one track of a million costs
    milliseconds, not a listing of the catalogue (seconds).
    """
    if len(track_ids) <= LOOKUP_LIMIT:
        return [t for t in track_ids if not instance.has_dynamic_partition(TRACKS_PARTITIONS_NAME, t)]
    known = set(registered_tracks(instance))
    return [t for t in track_ids if t not in known]


def register_tracks(instance: DagsterInstance, track_ids: Sequence[str]) -> list[str]:
    """Add the tracks as partitions in chunks; return the ones that were new."""
    ids = validate_track_ids(track_ids)
    new = unregistered(instance, ids)
    for start in range(0, len(new), PARTITION_ADD_CHUNK):
        instance.add_dynamic_partitions(TRACKS_PARTITIONS_NAME, new[start : start + PARTITION_ADD_CHUNK])
    return new


def ingest(
    instance: DagsterInstance,
    store: FeatureStore,
    sources: Mapping[str, str],
    on_recorded: Callable[[], None] | None = None,
) -> list[str]:
    """Register tracks: validate every ID first, record sources, then add partitions.

    Nothing is written if any ID is invalid. A partition is added only once
    its source is recorded, so every partition has a source. Returns the
    track IDs in the order given. ``on_recorded`` is called per source record.
    """
    track_ids = validate_track_ids(sources)
    normalized = {t: normalize_source_uri(sources[t]) for t in track_ids}
    record_sources(store, normalized, on_recorded)
    register_tracks(instance, track_ids)
    return track_ids
