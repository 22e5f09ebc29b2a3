"""Work claimed by runs in progress, so that no (feature, track) is computed by two runs at once.

A run claims every pair of its selection for its tracks (from its run config,
or its partition tags for runs launched from the UI) while a process executes
it (not started yet, starting, started). When a run's step begins, it leaves to
earlier runs the pairs they claim, and those pairs' descendants in its plan
(they would read inputs that are not recorded yet). Runs are ordered by their
storage ID, so of two runs the earlier always computes: two identical commands
started together compute each pair once. A claim ends with its run; a dead
run's claim ends when it is marked failed (``run_health``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from dagster import DagsterRun, RunsFilter

from klio_dagster.core.graph import FeatureGraph
from klio_dagster.orchestration.compat import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)
from klio_dagster.orchestration.run_health import OWNED
from klio_dagster.planning.planner import Pair, Plan

if TYPE_CHECKING:
    from klio_dagster.tiers.base import Catalogue


def run_tracks(catalogue: Catalogue, run: DagsterRun) -> list[str]:
    """The tracks a run is for: its config's ``tracks``, else its partition or partition range."""
    for op in (run.run_config or {}).get("ops", {}).values():
        if tracks := (op.get("config") or {}).get("tracks"):
            return list(tracks)
    if key := run.tags.get(PARTITION_NAME_TAG):
        return catalogue.tracks_of_partitions([key])
    start, end = run.tags.get(ASSET_PARTITION_RANGE_START_TAG), run.tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if start and end:
        return catalogue.tracks_of_partitions(catalogue.partition_keys_in_range(start, end))
    return []


def run_pairs(catalogue: Catalogue, run: DagsterRun) -> set[Pair]:
    """Every (asset, track) a run may make current: its selection times its tracks."""
    tracks = run_tracks(catalogue, run)
    return {(key.path[-1], t) for key in run.asset_selection or () for t in tracks}


def claims_before(catalogue: Catalogue, run_id: str) -> dict[Pair, str]:
    """Pairs claimed by runs in progress that were created before ``run_id``, with the claiming run's ID."""
    instance = catalogue.instance
    mine = instance.get_run_record_by_id(run_id)
    claimed: dict[Pair, str] = {}
    for record in instance.get_run_records(RunsFilter(statuses=OWNED)):
        if mine is not None and record.storage_id >= mine.storage_id:
            continue
        for pair in run_pairs(catalogue, record.dagster_run):
            claimed.setdefault(pair, record.dagster_run.run_id)
    return claimed


def leave_to_claimants(plan: Plan, graph: FeatureGraph, claimed: Iterable[Pair]) -> tuple[Plan, set[Pair]]:
    """``plan`` without the claimed pairs and their descendants for the same track; and what was left out."""
    claimed = set(claimed)
    held = {p for p in plan.to_compute if p in claimed}
    below = {(d, track) for feature, track in held for d in graph.descendants([feature])}
    left = held | {p for p in plan.to_compute if p in below}
    return plan.without(left), left
