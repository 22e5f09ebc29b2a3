"""The pure planner on hand-made lineage: every semantic of skip, stale, force and bottom-up, in milliseconds."""

from __future__ import annotations

import pytest

from examples.reference_graph import reference_graph as graph
from klio_dagster import FeatureGraphError
from klio_dagster.planning.planner import FeatureLineage, Plan, plan, state_of

pytestmark = pytest.mark.unit

CURRENT = {f.name: f.code_version for f in graph}


def lineage(made: dict[str, dict[str, tuple[str, int]]]) -> dict[str, FeatureLineage]:
    """``{feature: {track: (code_version, storage_id)}}`` as the event log would give it; absent: never made."""
    return {
        name: FeatureLineage(
            code_versions={t: v for t, (v, _) in made.get(name, {}).items()},
            storage_ids={t: i for t, (_, i) in made.get(name, {}).items()},
        )
        for name in graph.names
    }


def all_made(tracks, *, first_id: int = 1) -> dict[str, dict[str, tuple[str, int]]]:
    """Every feature current for ``tracks``, parents recorded before children."""
    made: dict[str, dict[str, tuple[str, int]]] = {}
    storage_id = first_id
    for name in graph.names:
        for track in tracks:
            made.setdefault(name, {})[track] = (CURRENT[name], storage_id)
            storage_id += 1
    return made


def test_nothing_made_bottom_up_computes_only_the_line_of_the_asked_feature():
    work = plan(graph, lineage({}), ["energy"], ["t1"])
    assert work.to_compute == [("downsample", "t1"), ("beat_tracking", "t1"), ("energy", "t1")]
    assert work.skipped == []  # never siblings: speechiness, instrumentalness, spectrogram are not considered


def test_everything_current_is_skipped():
    work = plan(graph, lineage(all_made(["t1", "t2"])), ["energy", "spectrogram"], ["t1", "t2"])
    assert work.to_compute == []
    assert len(work.skipped) == 4 * 2  # downsample, beat_tracking, energy, spectrogram


def test_another_code_version_is_stale_and_so_are_its_children():
    made = all_made(["t1"])
    made["beat_tracking"]["t1"] = ("0", made["beat_tracking"]["t1"][1])
    state = lineage(made)
    assert state_of(graph, state, "beat_tracking", "t1") == "stale"
    assert plan(graph, state, ["energy"], ["t1"]).to_compute == [("beat_tracking", "t1"), ("energy", "t1")]


def test_an_output_older_than_its_parents_latest_is_stale():
    made = all_made(["t1"])
    made["downsample"]["t1"] = (CURRENT["downsample"], 10_000)  # re-made after its children
    state = lineage(made)
    assert state_of(graph, state, "speechiness", "t1") == "stale"
    assert state_of(graph, state, "downsample", "t1") == "materialized"


def test_force_recomputes_the_asked_feature_and_reuses_current_ancestors():
    work = plan(graph, lineage(all_made(["t1"])), ["energy"], ["t1"], force=["energy"])
    assert work.to_compute == [("energy", "t1")]
    assert work.skipped == [("downsample", "t1"), ("beat_tracking", "t1")]


def test_without_bottom_up_ancestors_are_only_read():
    work = plan(graph, lineage({}), ["energy"], ["t1"], bottom_up=False)
    assert work.to_compute == [("energy", "t1")]


def test_tracks_are_planned_independently_in_one_plan():
    made = all_made(["t1"])
    work = plan(graph, lineage(made), ["speechiness"], ["t1", "t2"])
    assert work.to_compute == [("downsample", "t2"), ("speechiness", "t2")]
    assert work.features_by_track() == {"t2": ("downsample", "speechiness")}


def test_plan_without_pairs_in_flight():
    work = plan(graph, lineage({}), ["downsample"], ["t1", "t2"]).without({("downsample", "t1")})
    assert work == Plan([("downsample", "t2")], [("downsample", "t1")])


def test_unknown_features_are_a_graph_error():
    with pytest.raises(FeatureGraphError, match="unknown feature"):
        plan(graph, lineage({}), ["loudness"], ["t1"])


def test_ten_thousand_tracks_half_made_plan_the_other_half():
    tracks = [f"t{i}" for i in range(10_000)]
    work = plan(graph, lineage(all_made(tracks[:5_000])), list(graph.names), tracks)
    assert len(work.to_compute) == 6 * 5_000 and len(work.skipped) == 6 * 5_000
