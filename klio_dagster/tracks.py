"""Track IDs (untrusted input) and the shared ``tracks`` dynamic partitions."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import PurePosixPath

from dagster import DagsterInstance, DynamicPartitionsDefinition

from .errors import InvalidTrackId
from .registry import record_sources
from .sources import normalize_source_uri
from .storage import FeatureStore

TRACKS_PARTITIONS_NAME = "tracks"
tracks_partitions = DynamicPartitionsDefinition(name=TRACKS_PARTITIONS_NAME)

TRACK_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_TRACK_ID_RE = re.compile(TRACK_ID_PATTERN)

#: SQLite rejects very large inserts; this size is fast and safe.
PARTITION_ADD_CHUNK = 10_000


def validate_track_id(track_id: object) -> str:
    """Return ``track_id`` if it is a valid track ID, else raise :class:`InvalidTrackId`.

    A track ID becomes a partition key and a storage path segment, so the
    alphabet is fixed: ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}`` and no ``..``.
    """
    if not isinstance(track_id, str):
        raise InvalidTrackId(f"track ID must be a string, got {type(track_id).__name__}")
    if not _TRACK_ID_RE.fullmatch(track_id) or ".." in track_id:
        shown = track_id if len(track_id) <= 40 else track_id[:40] + "..."
        raise InvalidTrackId(
            f"invalid track ID {shown!r}: use 1-128 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit, without '..'"
        )
    return track_id


def validate_track_ids(track_ids: Iterable[object]) -> list[str]:
    """Validate every ID (all or nothing) and drop duplicates, keeping order."""
    ids = [validate_track_id(t) for t in track_ids]
    return list(dict.fromkeys(ids))


def track_id_from_path(path: str) -> str:
    """Default track ID of a file: its name without the extension, validated."""
    return validate_track_id(PurePosixPath(path.rstrip("/")).stem)


def registered_tracks(instance: DagsterInstance) -> list[str]:
    """All track IDs known to the instance, in registration order."""
    return list(instance.get_dynamic_partitions(TRACKS_PARTITIONS_NAME))


def register_tracks(instance: DagsterInstance, track_ids: Sequence[str]) -> list[str]:
    """Add the tracks as partitions in chunks; return the ones that were new."""
    ids = validate_track_ids(track_ids)
    known = set(registered_tracks(instance))
    new = [t for t in ids if t not in known]
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
