"""Planning: what to compute, from lineage (skip, stale, force, ping, bottom-up)."""
