"""B3: registering 100,000 tracks and planning 100,000 tracks x 6 features.

Registration (source records + chunked partition adds) is timed whole. The
planner (two batched event-log queries per feature, then the decision) is
timed against the naive way side by side: one latest-materialisation lookup
per (feature, track), measured on a sample and scaled to the same size.
A share of the tracks has real materialisation events, so the queries
return data rather than an empty set.

    python benchmarks/planning.py --tracks 100000 --materialized 1000
"""

from __future__ import annotations

import argparse
import time

from common import fresh_environment
from dagster import AssetKey, AssetMaterialization, AssetRecordsFilter, DagsterInstance
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from examples.reference_graph import reference_graph as graph
from klio_dagster import open_store
from klio_dagster.core.versions import make_data_version
from klio_dagster.orchestration.partitions import registered_tracks
from klio_dagster.planning.lineage import load_lineage
from klio_dagster.planning.planner import plan
from klio_dagster.tiers import NativeTier

NAIVE_SAMPLE = 500


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--materialized", type=int, default=1_000)
    args = parser.parse_args()
    with fresh_environment("planning") as root:
        instance = DagsterInstance.get()
        store = open_store(str(root / "store"))
        sources = {f"track-{i:06d}": f"/catalogue/{i:06d}.flac" for i in range(args.tracks)}

        start = time.perf_counter()
        NativeTier().open(instance, store).ingest(sources)
        register_s = time.perf_counter() - start
        tracks = registered_tracks(instance)
        assert len(tracks) == args.tracks

        start = time.perf_counter()
        # Current outputs, each made from its parents' outputs (their data versions are marked in it).
        versions: dict[str, str] = {}
        for feature in graph:  # topological: parents first
            versions[feature.name] = make_data_version(
                feature.code_version, "0" * 16, {p: versions[p] for p in feature.inputs}
            )
        for feature in graph:
            for track in tracks[: args.materialized]:
                instance.report_runless_asset_event(
                    AssetMaterialization(feature.name, partition=track, tags={DATA_VERSION_TAG: versions[feature.name]})
                )
        events_s = time.perf_counter() - start

        start = time.perf_counter()
        lineage = load_lineage(instance, graph.names, tracks)
        work = plan(graph, lineage, graph.names, tracks)
        plan_s = time.perf_counter() - start
        assert len(work.skipped) == len(graph) * args.materialized
        assert len(work.to_compute) == len(graph) * (args.tracks - args.materialized)

        start = time.perf_counter()
        sample = tracks[: NAIVE_SAMPLE // 2] + tracks[-NAIVE_SAMPLE // 2 :]
        for feature in graph:
            for track in sample:
                instance.fetch_materializations(
                    AssetRecordsFilter(asset_key=AssetKey(feature.name), asset_partitions=[track]), limit=1
                )
        naive_s = (time.perf_counter() - start) * args.tracks / len(sample)

    pairs = len(graph) * args.tracks
    print(f"B3 register {args.tracks} tracks: {register_s:.1f} s  (goal < 60 s)")
    print(f"   ({len(graph) * args.materialized} materialisation events recorded for the test in {events_s:.1f} s)")
    print(f"B3 plan {args.tracks} tracks x {len(graph)} features ({pairs} pairs): {plan_s:.2f} s  (goal < 2 s)")
    print(f"B3 naive per-pair lookups, scaled from {len(sample) * len(graph)} lookups: {naive_s:.0f} s")
    print(f"B3 planner speed-up over naive lookups: {naive_s / plan_s:.0f}x")


if __name__ == "__main__":
    main()
