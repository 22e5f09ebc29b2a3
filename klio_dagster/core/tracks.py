"""Track IDs: untrusted input that becomes a partition key and a storage path segment."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

from klio_dagster.errors import InvalidTrackId

TRACK_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_TRACK_ID_RE = re.compile(TRACK_ID_PATTERN)

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
