"""klio-dagster's states agree with Dagster's own staleness (what the UI shows as "Unsynced") in every case.

Dagster's answer comes from its stale-status resolver over the location's asset
graph, the code the UI runs; klio-dagster's from ``status``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace

import pytest
from dagster import AssetKey, DagsterInstance
from dagster._utils.test.data_versions import get_stale_status_resolver  # the resolver the UI's queries use

from examples.reference_graph import reference_graph
from klio_dagster import FeatureGraph, build_feature_definitions
from klio_dagster.planning.status import track_status
from klio_dagster.storage.stores import LocalFeatureStore

pytestmark = pytest.mark.integration
#: The same semantics on both instance storages: SQLite (embedded) and a real Postgres server.
INSTANCE_STORAGES = ("sqlite", "postgres")

DAGSTER_STATE = {"FRESH": "materialized", "STALE": "stale", "MISSING": "missing"}


def states(graph: FeatureGraph, track: str) -> tuple[dict[str, str], dict[str, str]]:
    """(klio-dagster's state, Dagster's state) of every feature of ``track``."""
    instance = DagsterInstance.get()
    ours = {r["feature"]: r["state"] for r in track_status(instance, graph, LocalFeatureStore(os.environ["KLIO_STORE"]), track)}
    assets = build_feature_definitions(graph, name="features").resolve_asset_graph().assets_defs
    resolver = get_stale_status_resolver(instance, assets)
    theirs = {f: DAGSTER_STATE[resolver.get_status(AssetKey(f), track).value] for f in graph.names}
    return {f: ours[f] for f in graph.names}, theirs


def bumped(graph: FeatureGraph, name: str) -> FeatureGraph:
    return FeatureGraph([replace(f, code_version=f.code_version + "-next") if f.name == name else f for f in graph.all_features])


def test_states_agree_with_dagster_fresh_recomputed_bumped_and_wiped(cli, catalogue, tmp_path):
    source = tmp_path / "song.wav"
    shutil.copy(next(t.path for t in catalogue if t.path.suffix == ".wav"), source)
    code, out = cli("ingest", str(source))
    (track,) = out["registered"]
    cli("materialize", "energy", "speechiness", "--tracks", track)

    ours, theirs = states(reference_graph, track)
    assert ours == theirs
    assert ours["energy"] == ours["speechiness"] == "materialized" and ours["spectrogram"] == "missing"

    cli("materialize", "downsample", "--tracks", track, "--force")  # the same bytes again
    ours, theirs = states(reference_graph, track)
    assert ours == theirs and ours["beat_tracking"] == "materialized"

    other = next(t.path for t in catalogue if t.path.suffix == ".wav" and t.path.read_bytes() != source.read_bytes())
    shutil.copy(other, source)  # the source changes: downsample's bytes change
    cli("materialize", "downsample", "--tracks", track, "--force")
    ours, theirs = states(reference_graph, track)
    assert ours == theirs
    assert ours["beat_tracking"] == ours["speechiness"] == "stale" and ours["spectrogram"] == "missing"

    cli("materialize", "energy", "speechiness", "--tracks", track)
    graph = bumped(reference_graph, "beat_tracking")
    ours, theirs = states(graph, track)
    assert ours == theirs
    # A new code version makes the feature and every descendant stale, in the UI too; never its parents or siblings.
    assert ours["beat_tracking"] == ours["energy"] == "stale"
    assert ours["downsample"] == ours["speechiness"] == "materialized"

    DagsterInstance.get().wipe_assets([AssetKey("downsample")])  # SQLite wipes whole assets only
    ours, theirs = states(reference_graph, track)
    assert ours == theirs
    assert ours["downsample"] == "missing" and ours["beat_tracking"] == "materialized"
