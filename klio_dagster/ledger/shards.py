"""Track shards: a stable hash of the track ID into a bounded set of Dagster partitions.

The ledger tier partitions every feature asset by shard rather than by track,
so the Dagster UI lists a few thousand partitions at any catalogue size. A
track's shard never changes for a given shard count (BLAKE2b of the UTF-8
track ID, not Python's salted ``hash``), so every process agrees on it.
"""

from __future__ import annotations

import hashlib

#: The default: 4,096 shards hold 2,400 tracks each at 10 million tracks, 24,000 at 100 million.
DEFAULT_SHARDS = 4_096
_PREFIX = "shard-"


def shard_of(track_id: str, shards: int) -> int:
    """The shard of ``track_id`` among ``shards``, in ``[0, shards)``."""
    digest = hashlib.blake2b(track_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def shard_width(shards: int) -> int:
    return len(str(shards - 1))


def shard_key(shard: int, shards: int) -> str:
    """The partition key of ``shard``: ``shard-0042`` (zero-padded, so keys sort as numbers)."""
    return f"{_PREFIX}{shard:0{shard_width(shards)}d}"


def shard_keys(shards: int) -> list[str]:
    return [shard_key(s, shards) for s in range(shards)]


def shard_number(key: str, shards: int) -> int:
    """The shard a partition key names; ``ValueError`` if it names none of ``shards``."""
    number = key.removeprefix(_PREFIX)
    if not key.startswith(_PREFIX) or not number.isdigit() or int(number) >= shards:
        raise ValueError(f"{key!r} is not a shard partition key of {shards} shards ({shard_key(0, shards)} ... {shard_key(shards - 1, shards)})")
    return int(number)
