"""S1 (status part): `klio-dagster status` of one track in a catalogue of N registered tracks.

Side by side in the same instance: the path before issue 12 (a listing of every
registered track to check that one is registered) and today's (one indexed
lookup, ``has_dynamic_partition``), each followed by the same per-track status
(lineage of that track only). Timed past start-up: the instance is open and the
modules are imported, as in a long-lived process; the median of 5 calls each.

    python benchmarks/status_scale.py --tracks 1000000
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import fresh_environment
from dagster import DagsterInstance

from examples.reference_graph import reference_graph as graph
from klio_dagster import open_store
from klio_dagster.orchestration.partitions import (
    PARTITION_ADD_CHUNK,
    TRACKS_PARTITIONS_NAME,
    registered_tracks,
    unregistered,
)
from klio_dagster.planning.status import track_status
from klio_dagster.storage.registry import record_sources

CALLS = 5


def median_s(fn) -> float:
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracks", type=int, default=1_000_000)
    args = parser.parse_args()
    with fresh_environment("status") as root:
        instance = DagsterInstance.get()
        store = open_store(str(root / "store"))
        ids = [f"track-{i:07d}" for i in range(args.tracks)]
        start = time.perf_counter()
        for i in range(0, len(ids), PARTITION_ADD_CHUNK):
            instance.add_dynamic_partitions(TRACKS_PARTITIONS_NAME, ids[i : i + PARTITION_ADD_CHUNK])
        print(f"S1 registered {args.tracks} partitions in {time.perf_counter() - start:.1f} s (setup)")
        track = ids[len(ids) // 2]
        record_sources(store, {track: "/catalogue/one.flac"})

        def before() -> None:
            assert track in set(registered_tracks(instance))
            track_status(instance, graph, store, track)

        def now() -> None:
            assert not unregistered(instance, [track])
            track_status(instance, graph, store, track)

        before_s, now_s = median_s(before), median_s(now)
        print(f"S1 status of one track of {args.tracks}, listing every track (before): {before_s * 1000:.0f} ms")
        print(f"S1 status of one track of {args.tracks}, one lookup (now):             {now_s * 1000:.0f} ms  (goal < 100 ms)")
        print(f"S1 speed-up: {before_s / now_s:.1f}x")


if __name__ == "__main__":
    main()
