"""The ledger's tables: tracks (with their sources), the latest state of each (feature, track), and versions.

One row per (feature, track) holds its latest success and its latest failure
side by side, as the event log's latest materialisation and latest failed
observation do in the native tier; its state follows from which is newer.
Indexes serve every question the product asks: a track's rows (primary key
prefix by ``feature`` then ``track_id``, and ``ix_pairs_track``), a run's
rows (what it computed, what failed), a shard's counts.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

tracks = Table(
    "klio_tracks",
    metadata,
    Column("track_id", String(255), primary_key=True),
    Column("shard", Integer, nullable=False),
    Column("source_uri", Text, nullable=False),
    Column("from_event", Boolean, nullable=False, default=False),
    Column("registered_at", Float, nullable=False),
    Index("ix_tracks_shard", "shard", "track_id"),
)

pairs = Table(
    "klio_pairs",
    metadata,
    Column("feature", String(255), primary_key=True),
    Column("track_id", String(255), primary_key=True),
    Column("shard", Integer, nullable=False),
    # The latest success.
    Column("data_version", Text),
    Column("code_version", String(255)),
    Column("uri", Text),
    Column("run_id", String(64)),
    Column("compute_s", Float),
    Column("recorded_at", Float),
    Column("metadata", Text),
    # The latest failure.
    Column("failed_at", Float),
    Column("failed_run_id", String(64)),
    Column("error", Text),
    # The latest ping.
    Column("pinged_at", Float),
    Column("ping_decision", String(16)),
    Index("ix_pairs_track", "track_id"),
    Index("ix_pairs_run", "run_id"),
    Index("ix_pairs_failed_run", "failed_run_id"),
    # Covering a page's lineage read (by shard): no table lookup per row.
    Index("ix_pairs_feature_shard", "feature", "shard", "track_id", "data_version"),
    Index("ix_pairs_feature_recorded", "feature", "recorded_at"),
)

#: The ledger's own settings (``shards``: the shard count its tracks were registered with).
settings = Table(
    "klio_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

#: What made each version of a feature (code version, params, decode, libraries): written once per version.
versions = Table(
    "klio_versions",
    metadata,
    Column("feature", String(255), primary_key=True),
    Column("version", String(255), primary_key=True),
    Column("provenance", Text, nullable=False),
)
