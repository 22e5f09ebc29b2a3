"""Source records: which file each track was registered with.

A record is a small JSON object stored at ``audio/{track_id}.json`` in the
feature store, so registering a track is one atomic write and the set of
registered sources is one listing. Recording a Dagster event per track
would cost ~10 ms each and make bulk registration of 100k tracks take
minutes; the partition add itself is chunked (see ``tracks.ingest``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from klio_dagster.core.features import AUDIO
from klio_dagster.storage.stores import FeatureStore, object_name


def source_record_name(track_id: str) -> str:
    return object_name(AUDIO, track_id, "json")


@dataclass(frozen=True)
class SourceRecord:
    """Where a track's source is, and whether an event (rather than a user's command) named it."""

    uri: str
    from_event: bool = False


def record_sources(
    store: FeatureStore,
    sources: Mapping[str, str],
    on_written: Callable[[], None] | None = None,
    *,
    from_event: bool = False,
) -> None:
    """Write one source record per track (in parallel on network stores: each is one small object).

    ``from_event`` marks sources named by events: they are checked against the
    allowed roots again when read.
    """
    now = time.time()

    def write(item: tuple[str, str]) -> None:
        track_id, uri = item
        record = {"track_id": track_id, "uri": uri, "registered_at": now, "from_event": from_event}
        store.write_bytes(source_record_name(track_id), json.dumps(record).encode())

    if store.io_threads <= 1:
        for item in sources.items():
            write(item)
            if on_written:
                on_written()
        return
    with ThreadPoolExecutor(store.io_threads) as pool:
        for _ in pool.map(write, sources.items()):
            if on_written:
                on_written()


def read_source_record(store: FeatureStore, track_id: str) -> SourceRecord | None:
    """The source record of a track, or ``None`` if it has none."""
    try:
        record = json.loads(store.read_bytes(source_record_name(track_id)))
    except FileNotFoundError:
        return None
    return SourceRecord(record["uri"], bool(record.get("from_event")))


def read_source_uri(store: FeatureStore, track_id: str) -> str | None:
    """The registered source URI of a track, or ``None`` if it has none."""
    record = read_source_record(store, track_id)
    return record.uri if record else None


def tracks_with_sources(store: FeatureStore) -> set[str]:
    """Every track that has a source record, from one listing."""
    return store.existing_tracks(AUDIO, "json")


def local_source_duration_s(record: SourceRecord | None) -> float | None:
    """The duration in seconds its file's header gives, for a source that is a local file; else ``None``."""
    import soundfile as sf

    uri = record.uri if record else None
    if uri is None or "://" in uri:
        return None
    try:
        return float(sf.info(uri).duration)
    except (OSError, RuntimeError, sf.LibsndfileError):
        return None
