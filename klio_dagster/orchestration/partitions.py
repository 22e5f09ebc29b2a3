"""The shared ``tracks`` dynamic partitions of the native tier, and registering tracks into them."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import DagsterInstance, DynamicPartitionsDefinition

from klio_dagster.core.tracks import validate_track_ids

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

