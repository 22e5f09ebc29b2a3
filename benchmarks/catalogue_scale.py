"""S1 (native tier, planning) and S3 (ledger tier) at catalogue scale.

Each measurement runs in its own child process, so that its peak RSS is its own;
the catalogue is built once per size by the parent.

S1 ``native``: N tracks registered as ``tracks`` partitions (100 of them with all six
features recorded). Side by side: ``before`` (the path before issue 12: list every
track, load lineage of all of them at once, then the per-track planner) and ``paged``
(today's ``plan --all-tracks``: keyset pages of 10,000 tracks, the column planner).

S3 ``ledger``: N tracks registered in the ledger tier's SQLite ledger (the embedded
case) through the catalogue's bulk registration, R of them with all six features
recorded; then ``plan --all-tracks`` of 6 features (paged), ``status`` of one track
(median of 5 past start-up), a local-queue sensor tick registering 20,000 new tracks
(real files, the reference location), and, with ``--ui``, the GraphQL queries the
Dagster UI's asset page and partitions tab send (Chromium through Playwright, against
``dagster dev``), each timed.

    python benchmarks/catalogue_scale.py native --tracks 100000 1000000
    python benchmarks/catalogue_scale.py ledger --tracks 10000000 --recorded 1000000 --ui
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, fresh_environment

FEATURES = ["downsample", "beat_tracking", "energy", "speechiness", "instrumentalness", "spectrogram"]
RECORDED_NATIVE = 100
STATUS_CALLS = 5


def child(kind: str, **options) -> dict:
    """Run ``kind`` in a child process on the current environment; its JSON result with its peak RSS."""
    out = subprocess.run(
        [sys.executable, __file__, "child", kind, json.dumps(options)], capture_output=True, text=True, env=os.environ, cwd=REPO
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_mb() -> float:
    """This process's peak RSS since it started (``VmHWM``: ``ru_maxrss`` would count the parent it forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _versions() -> dict[str, str]:
    from examples.reference_graph import reference_graph as graph
    from klio_dagster.core.versions import make_data_version

    versions: dict[str, str] = {}
    for feature in graph:
        versions[feature.name] = make_data_version(feature.version, "0" * 16, {p: versions[p] for p in graph.stored_inputs(feature.name)})
    return versions


# Children --------------------------------------------------------------------------------------


def plan_before(options: dict) -> dict:
    """The planning path before issue 12: the whole catalogue listed, its lineage loaded, planned track by track."""
    sys.path.insert(0, str(REPO / "tests"))
    from dagster import DagsterInstance
    from test_planner import per_track_plan

    from examples.reference_graph import reference_graph as graph
    from klio_dagster.orchestration.partitions import registered_tracks
    from klio_dagster.planning.lineage import load_lineage

    instance = DagsterInstance.get()
    start = time.perf_counter()
    tracks = registered_tracks(instance)
    work = per_track_plan(graph, load_lineage(instance, graph.names, None), FEATURES, tracks)
    return {"seconds": time.perf_counter() - start, "to_compute": len(work.to_compute), "skipped": len(work.skipped)}


def plan_paged(options: dict) -> dict:
    """Today's ``plan --all-tracks``: pages of the catalogue planned against the tier's lineage, counted."""
    from dagster import DagsterInstance

    from examples.reference_graph import reference_graph as graph
    from klio_dagster import open_store
    from klio_dagster.cli.plan import PAGE_TRACKS
    from klio_dagster.planning.estimate import WorkTally
    from klio_dagster.planning.lineage import plan_pages
    from klio_dagster.tiers import tier_from_environment

    catalogue = tier_from_environment().open(DagsterInstance.get(), open_store(os.environ["KLIO_STORE"]))
    start = time.perf_counter()
    tally, skipped = WorkTally(), 0
    for work in plan_pages(catalogue, graph, FEATURES, catalogue.track_pages(PAGE_TRACKS), whole_catalogue=True):
        tally.add(work)
        skipped += sum(len(tracks) for tracks in work.skip.values())
    return {"seconds": time.perf_counter() - start, "to_compute": sum(tally.pairs.values()), "skipped": skipped}


def status_one(options: dict) -> dict:
    """``status`` of one track, past start-up: the median of a few calls in a long-lived process."""
    from dagster import DagsterInstance

    from examples.reference_graph import reference_graph as graph
    from klio_dagster import open_store
    from klio_dagster.tiers import tier_from_environment

    catalogue = tier_from_environment().open(DagsterInstance.get(), open_store(os.environ["KLIO_STORE"]))
    track = options["track"]
    times = []
    for _ in range(STATUS_CALLS):
        start = time.perf_counter()
        assert not catalogue.unregistered([track])
        rows = catalogue.track_status(graph, track)
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "states": {r["feature"]: r["state"] for r in rows}}


def sensor_tick(options: dict) -> dict:
    """One local-queue sensor tick (20,000 messages a tick) of the reference graph over new tracks' events."""
    from functools import partial

    from dagster import DagsterInstance

    from examples.reference_graph import reference_graph
    from klio_dagster import build_feature_definitions, build_local_queue_sensor
    from klio_dagster.events.local_queue import LocalQueue
    from klio_dagster.events.messages import TrackEvent
    from klio_dagster.orchestration.ticks import evaluate_tick

    folder = Path(options["media"])
    queue = LocalQueue(os.environ["KLIO_QUEUE"])
    queue.publish_events([TrackEvent(p.stem, uri=str(p)) for p in sorted(folder.iterdir())])
    defs = build_feature_definitions(reference_graph, sensors=[partial(build_local_queue_sensor, max_messages_per_tick=20_000)])
    instance = DagsterInstance.get()
    start = time.perf_counter()
    result = evaluate_tick(defs, "klio_features_local_ingestion", instance)
    seconds = time.perf_counter() - start
    tracks = sum(len(r.run_config["ops"]["klio_features"]["config"]["tracks"]) for r in result.run_requests)
    return {"seconds": seconds, "runs": len(result.run_requests), "tracks_in_runs": tracks}


def planners(options: dict) -> dict:
    """The decision alone on lineage where every pair is current (the case where it is all the work): per track, per column."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_planner import per_track_plan

    from examples.reference_graph import reference_graph as graph
    from klio_dagster.planning.planner import FeatureLineage, plan

    tracks = [f"track-{i:08d}" for i in range(options["tracks"])]
    versions = _versions()
    lineage = {f: FeatureLineage({t: versions[f] for t in tracks}, {}) for f in graph.names}
    start = time.perf_counter()
    slow = per_track_plan(graph, lineage, FEATURES, tracks)
    per_track_s = time.perf_counter() - start
    start = time.perf_counter()
    fast = plan(graph, lineage, FEATURES, tracks)
    column_s = time.perf_counter() - start
    assert fast == slow and not fast.to_compute
    return {"per_track_s": per_track_s, "column_s": column_s}


CHILDREN = {"planners": planners, "plan_before": plan_before, "plan_paged": plan_paged, "status_one": status_one, "sensor_tick": sensor_tick}


# Catalogue building ----------------------------------------------------------------------------


def build_native(n: int) -> None:
    from dagster import AssetMaterialization, DagsterInstance

    from klio_dagster.orchestration.compat import DATA_VERSION_TAG
    from klio_dagster.orchestration.partitions import PARTITION_ADD_CHUNK, TRACKS_PARTITIONS_NAME

    instance = DagsterInstance.get()
    ids = [f"track-{i:08d}" for i in range(n)]
    for i in range(0, n, PARTITION_ADD_CHUNK):
        instance.add_dynamic_partitions(TRACKS_PARTITIONS_NAME, ids[i : i + PARTITION_ADD_CHUNK])
    versions = _versions()
    for name in FEATURES:
        for track in ids[:RECORDED_NATIVE]:
            instance.report_runless_asset_event(AssetMaterialization(name, partition=track, tags={DATA_VERSION_TAG: versions[name]}))


def build_ledger(n: int, recorded: int, shards: int) -> dict[str, float]:
    from dagster import DagsterInstance

    from klio_dagster import open_store
    from klio_dagster.ledger import Recorded
    from klio_dagster.tiers import LedgerTier

    catalogue = LedgerTier(shards=shards).open(DagsterInstance.get(), open_store(os.environ["KLIO_STORE"]))
    chunk = 100_000
    start = time.perf_counter()
    for i in range(0, n, chunk):
        catalogue.register({f"track-{j:08d}": f"/catalogue/{j:08d}.flac" for j in range(i, min(n, i + chunk))})
    register_s = time.perf_counter() - start
    versions = _versions()
    start = time.perf_counter()
    for i in range(0, recorded, chunk):
        tracks = [f"track-{j:08d}" for j in range(i, min(recorded, i + chunk))]
        catalogue.ledger.record([
            Recorded(f, t, versions[f], versions[f].rpartition(":")[0], f"/store/{f}/{t}", "bench", 0.01, {"audio_s": 180.0})
            for f in FEATURES for t in tracks
        ])
    record_s = time.perf_counter() - start
    catalogue.close()
    return {"register_s": register_s, "record_s": record_s}


def media_folder(root: Path, n: int) -> Path:
    """``n`` real audio files (hard links of one short WAV), named as new tracks."""
    from klio_dagster.demo.catalogue import write_catalogue

    (track,) = write_catalogue(root / "one", n_tracks=1, duration_s=2.0, prefix="x")
    folder = root / "media" / "new"
    folder.mkdir(parents=True)
    for i in range(n):
        os.link(track.path, folder / f"new-{i:06d}{track.path.suffix}")
    return folder


def ui_queries(root: Path) -> dict[str, float]:
    """Seconds of each GraphQL query the UI's asset page and partitions tab send (the slowest of each name)."""
    sys.path.insert(0, str(REPO / "tests"))
    from playwright.sync_api import sync_playwright
    from servers import running_dagster_dev

    timings: dict[str, float] = {}
    with running_dagster_dev(root) as port, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(120_000)

        def finished(request) -> None:
            if "/graphql" in request.url and request.post_data:
                name = json.loads(request.post_data).get("operationName") or "?"
                t = request.timing
                seconds = (t["responseEnd"] - t["requestStart"]) / 1000 if t["responseEnd"] > 0 else 0.0
                timings[name] = max(timings.get(name, 0.0), seconds)

        for visit in ("cold", "warm"):  # the first visit also warms the webserver: the second is what a user waits for
            if visit == "warm":
                timings.clear()
                page.on("requestfinished", finished)
            for path in ("/assets/energy", "/assets/energy?view=partitions"):
                page.goto(f"http://127.0.0.1:{port}{path}")
                page.wait_for_load_state("networkidle")
                time.sleep(3)
                page.wait_for_load_state("networkidle")
        browser.close()
    return timings


# Orchestration ---------------------------------------------------------------------------------


def native(sizes: list[int]) -> None:
    decision = child("planners", tracks=100_000)
    print(f"S1 deciding 100,000 tracks x 6, every pair current: per track {decision['per_track_s']:.2f} s, "
          f"per column {decision['column_s']:.2f} s ({decision['per_track_s'] / decision['column_s']:.1f}x)")
    for n in sizes:
        with fresh_environment("s1-plan"):
            os.environ["KLIO_TIER"] = "native"
            start = time.perf_counter()
            build_native(n)
            print(f"S1 {n:,} tracks registered ({RECORDED_NATIVE} with all features) in {time.perf_counter() - start:.0f} s")
            before, paged = child("plan_before"), child("plan_paged")
            assert (before["to_compute"], before["skipped"]) == (paged["to_compute"], paged["skipped"]), (before, paged)
            pairs = before["to_compute"] + before["skipped"]
            for label, r in (("before", before), ("paged", paged)):
                print(f"S1 plan --all-tracks {n:,} tracks x 6 ({pairs:,} pairs), {label:>6}: "
                      f"{r['seconds']:6.1f} s, peak RSS {r['peak_rss_mb']:6.0f} MB")
            print(f"S1 paged / before at {n:,}: {before['seconds'] / paged['seconds']:.1f}x faster, "
                  f"{paged['peak_rss_mb'] / before['peak_rss_mb']:.2f}x the memory")


def ledger(n: int, recorded: int, shards: int, ui: bool) -> None:
    with fresh_environment("s3-ledger") as root:
        os.environ.update(KLIO_TIER="ledger", KLIO_LEDGER_SHARDS=str(shards))
        os.environ["KLIO_ALLOWED_SOURCES"] = str(root / "media")
        built = build_ledger(n, recorded, shards)
        print(f"S3 register {n:,} tracks in the ledger: {built['register_s']:.0f} s ({n / built['register_s']:,.0f} tracks/s)")
        print(f"S3 record {recorded * len(FEATURES):,} pairs: {built['record_s']:.0f} s "
              f"({recorded * len(FEATURES) / built['record_s']:,.0f} pairs/s)")
        planned = child("plan_paged")
        print(f"S3 plan --all-tracks {n:,} x 6 ({planned['to_compute'] + planned['skipped']:,} pairs, "
              f"{planned['skipped']:,} current): {planned['seconds']:.1f} s, peak RSS {planned['peak_rss_mb']:.0f} MB")
        for track in ("track-00000001", f"track-{n - 1:08d}"):
            status = child("status_one", track=track)
            print(f"S3 status {track}: {status['seconds'] * 1000:.1f} ms ({status['states']['energy']})")
        media = media_folder(root, 20_000)
        tick = child("sensor_tick", media=str(media))
        print(f"S3 sensor tick registering 20,000 new tracks: {tick['seconds']:.1f} s "
              f"({tick['runs']} runs over {tick['tracks_in_runs']:,} tracks), peak RSS {tick['peak_rss_mb']:.0f} MB")
        if ui:
            # The tick's 20,000 events are still queued: `dagster dev`'s daemon would run the sensor and
            # compute them while the UI is timed. The UI is timed on an idle server, its queue empty.
            (root / "queue-ui").mkdir()
            os.environ["KLIO_QUEUE"] = str(root / "queue-ui")
            runs = _runs_count()
            for name, seconds in sorted(ui_queries(root).items(), key=lambda kv: -kv[1]):
                print(f"S3 UI query {name}: {seconds:.2f} s")
            print(f"S3 runs launched while the UI was timed: {_runs_count() - runs}")


def _runs_count() -> int:
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        return instance.get_runs_count()


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        result = CHILDREN[sys.argv[2]](json.loads(sys.argv[3]))
        print(json.dumps({**result, "peak_rss_mb": _peak_mb()}))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("tier", choices=["native", "ledger"])
    parser.add_argument("--tracks", type=int, nargs="+", default=None)
    parser.add_argument("--recorded", type=int, default=1_000_000, help="ledger: tracks with all six features recorded")
    parser.add_argument("--shards", type=int, default=4_096)
    parser.add_argument("--ui", action="store_true", help="ledger: time the UI's asset page queries (Chromium)")
    args = parser.parse_args()
    os.chdir(REPO)
    if args.tier == "native":
        native(args.tracks or [100_000, 1_000_000])
    else:
        ledger((args.tracks or [10_000_000])[0], args.recorded, args.shards, args.ui)


if __name__ == "__main__":
    main()
