"""S2: recording (feature, track) outcomes from inside a real Dagster run, on a real Postgres server.

Three ways side by side, in the same instance and script, each a run of one
asset step that records ``--pairs`` successes of ``--features`` features:

- ``yield``: one ``AssetMaterialization`` yielded per pair (the native tier's path): one
  event-log write each;
- ``dagster-batch``: the same events logged with Dagster's batch metadata
  (``DagsterEventBatchMetadata``, ``DAGSTER_EVENT_BATCH_SIZE``), which Postgres stores with
  ``store_event_batch``, one asset key per batch: what Dagster allows at best;
- ``ledger``: the ledger tier's recorder: the rows written in bulk to the ledger, then one
  materialisation per (feature, shard) touched, for a run over whole shards (as
  ``materialize --all-tracks`` pages and UI backfills of shards make them);
- ``ledger-spread``: the same for a run whose tracks each fall in another shard (a worst case:
  one event per pair, as ``yield``).

    python benchmarks/recording.py --pairs 1200 --batch-pairs 30000 --ledger-pairs 300000
"""


import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

from common import fresh_environment
from dagster import (
    AssetExecutionContext,
    AssetMaterialization,
    AssetSpec,
    DagsterInstance,
    DynamicPartitionsDefinition,
    materialize,
    multi_asset,
)
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata

from klio_dagster.ledger import Ledger, Recorded, shard_key, shard_of
from klio_dagster.orchestration.compat import log_materialization_batch, stores_event_batches
from klio_dagster.orchestration.instance import instance_config
from klio_dagster.orchestration.postgres import POSTGRES_URL_VARIABLE, LocalPostgres

FEATURES = ["f1", "f2", "f3", "f4", "f5", "f6"]
tracks_partitions = DynamicPartitionsDefinition(name="tracks")


def _data_version(i: int) -> str:
    return f"1:{i:016x}"


def build(mode: str, tracks: list[str], ledger_url: str, shards: int):
    @multi_asset(specs=[AssetSpec(f) for f in FEATURES], name=f"record_{mode.replace('-', '_')}")
    def recorder(context: AssetExecutionContext):
        if mode == "yield":
            for feature in FEATURES:
                for i, track in enumerate(tracks):
                    yield AssetMaterialization(feature, partition=track, tags={"dagster/data_version": _data_version(i)},
                                               metadata={"compute_s": 0.01, "audio_s": 180.0})
        elif mode == "dagster-batch":
            step = context.get_step_execution_context()
            for feature in FEATURES:
                for i, track in enumerate(tracks):
                    batch = DagsterEventBatchMetadata(f"{context.run_id}:{feature}", is_end=i == len(tracks) - 1)
                    DagsterEvent.asset_materialization(
                        step,
                        AssetMaterialization(feature, partition=track, tags={"dagster/data_version": _data_version(i)},
                                             metadata={"compute_s": 0.01, "audio_s": 180.0}),
                        batch_metadata=batch,
                    )
        else:
            ledger = Ledger(ledger_url, shards)
            for feature in FEATURES:
                ledger.record([Recorded(feature, t, _data_version(i), "1", f"/store/{feature}/{t}", context.run_id, 0.01,
                                        {"audio_s": 180.0}) for i, t in enumerate(tracks)])
            touched = sorted({shard_of(t, shards) for t in tracks})
            for feature in FEATURES:  # as LedgerRecorder.finish: one batch per feature where the instance can
                counts = ledger.shard_counts(feature, "1", touched)
                events = [AssetMaterialization(feature, partition=shard_key(shard, shards),
                                               metadata={"shard_current": counts[shard]["current"]}) for shard in touched]
                if stores_event_batches(context.instance):
                    log_materialization_batch(context, events)
                else:
                    yield from events
            ledger.close()

    return recorder


def run(mode: str, tracks: list[str], ledger_url: str, shards: int) -> float:
    instance = DagsterInstance.get()
    start = time.perf_counter()
    result = materialize([build(mode, tracks, ledger_url, shards)], instance=instance)
    elapsed = time.perf_counter() - start
    assert result.success
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=1_200, help="(feature, track) pairs written one event at a time")
    parser.add_argument("--batch-pairs", type=int, default=30_000, help="pairs for Dagster's batched path")
    parser.add_argument("--ledger-pairs", type=int, default=200_000, help="pairs for the ledger path")
    parser.add_argument("--shards", type=int, default=4_096)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="klio-bench-pg-"))
    server = LocalPostgres(folder).start()
    try:
        with fresh_environment("recording") as root:
            url = server.create_database("bench")
            os.environ[POSTGRES_URL_VARIABLE] = url
            (root / "home" / "dagster.yaml").write_text(instance_config(postgres=True))
            os.environ["DAGSTER_EVENT_BATCH_SIZE"] = "1000"
            n = max(1, args.pairs // len(FEATURES))
            small = [f"track-{i:08d}" for i in range(n)]
            wanted = max(1, args.ledger_pairs // len(FEATURES))
            candidates = (f"track-{i:08d}" for i in itertools.count())
            whole_shards = list(itertools.islice((t for t in candidates if shard_of(t, args.shards) < 8), wanted))
            seen: set[int] = set()
            spread = [t for t in small if not (shard_of(t, args.shards) in seen or seen.add(shard_of(t, args.shards)))]
            batched = [f"track-{i:08d}" for i in range(max(1, args.batch_pairs // len(FEATURES)))]
            results = {}
            cases = (("yield", small), ("dagster-batch", batched), ("ledger", whole_shards), ("ledger-spread", spread))
            for mode, tracks in cases:
                seconds = run(mode.removesuffix("-spread"), tracks, url, args.shards)
                results[mode] = (len(tracks) * len(FEATURES), seconds)
                pairs, s = results[mode]
                print(f"S2 {mode:>13}: {pairs:>8,} pairs in {s:7.2f} s = {pairs / s:>9,.0f} pairs/s (run start/end included)")
            base = results["yield"][0] / results["yield"][1]
            for mode in ("dagster-batch", "ledger", "ledger-spread"):
                rate = results[mode][0] / results[mode][1]
                print(f"S2 {mode} / yield: {rate / base:.1f}x")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
