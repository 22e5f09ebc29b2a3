"""The per-track ledger of the ledger tier: tables, bulk writes, indexed reads, shards (no Dagster here)."""

from klio_dagster.ledger.shards import DEFAULT_SHARDS, shard_key, shard_keys, shard_number, shard_of
from klio_dagster.ledger.store import Failed, Ledger, PairState, Recorded, Source, TrackPage

__all__ = [
    "DEFAULT_SHARDS", "Failed", "Ledger", "PairState", "Recorded", "Source",
    "shard_key", "shard_keys", "shard_number", "shard_of", "TrackPage",
]
