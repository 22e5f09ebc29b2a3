"""Stale detection and the planner's decisions from recorded lineage, in both tiers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from examples.reference_graph import reference_graph
from klio_dagster import FeatureGraph
from klio_dagster.cli.location import load_location
from klio_dagster.planning.planner import plan, state_of

pytestmark = pytest.mark.integration
#: The same semantics on both instance storages: SQLite (embedded) and a real Postgres server.
INSTANCE_STORAGES = ("sqlite", "postgres")
TIERS = ("native", "ledger")


def recorded(features, tracks):
    """The lineage the location's tier (the event log, or the ledger) records."""
    return load_location().catalogue.lineage(list(features), tracks)


def bumped(graph: FeatureGraph, name: str) -> FeatureGraph:
    return FeatureGraph([replace(f, code_version=f.code_version + "-next") if f.name == name else f for f in graph.all_features])


def test_bumped_code_version_makes_feature_and_descendants_stale(cli, ingested):
    track = ingested[0]
    cli("materialize", "energy", "speechiness", "--tracks", track)
    graph = bumped(reference_graph, "beat_tracking")
    lineage = recorded(graph.names, [track])
    assert state_of(graph, lineage, "beat_tracking", track) == "stale"
    assert state_of(graph, lineage, "downsample", track) == "materialized"
    work = plan(graph, lineage, ["energy", "speechiness"], [track])
    assert work.to_compute == [("beat_tracking", track), ("energy", track)]
    assert ("downsample", track) in work.skipped and ("speechiness", track) in work.skipped


def test_a_parent_recomputed_into_the_same_bytes_leaves_its_children_current(cli, ingested):
    track = ingested[1]
    cli("materialize", "energy", "--tracks", track)
    cli("materialize", "downsample", "--tracks", track, "--force")
    lineage = recorded(reference_graph.names, [track])
    assert state_of(reference_graph, lineage, "beat_tracking", track) == "materialized"
    code, out = cli("plan", "energy", "--tracks", track)
    assert out["to_compute"] == []


def test_planner_on_an_empty_log_computes_the_closure_only(klio_env):
    lineage = recorded(reference_graph.names, ["a", "b"])
    work = plan(reference_graph, lineage, ["spectrogram"], ["a", "b"])
    assert work.to_compute == [("downsample", "a"), ("downsample", "b"), ("spectrogram", "a"), ("spectrogram", "b")]
    assert work.features_by_track() == {"a": ("downsample", "spectrogram"), "b": ("downsample", "spectrogram")}


def test_a_plan_over_the_whole_catalogue_reads_the_lineage_a_plan_of_its_tracks_reads(cli, ingested):
    cli("materialize", "energy", "--tracks", *ingested[:2])
    cli("materialize", "downsample", "--tracks", ingested[2])
    catalogue = load_location().catalogue
    names = list(reference_graph.names)
    whole = catalogue.catalogue_lineage(names)(ingested)
    assert set(whole["energy"].data_versions) == set(ingested[:2])
    assert set(whole["downsample"].data_versions) == set(ingested[:3])
    assert {n: lin.data_versions for n, lin in whole.items()} == {n: lin.data_versions for n, lin in recorded(names, ingested).items()}
    _, every = cli("plan", "energy", "speechiness", "--all-tracks")
    _, named = cli("plan", "energy", "speechiness", "--tracks", *ingested)
    assert sorted(every["to_compute"]) == sorted(named["to_compute"]) and sorted(every["skipped"]) == sorted(named["skipped"])
    assert ["speechiness", ingested[0]] in every["to_compute"] and ["energy", ingested[0]] in every["skipped"]
