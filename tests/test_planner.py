"""The pure planner on hand-made lineage: every semantic of skip, stale, force and bottom-up, in milliseconds."""

from __future__ import annotations

import pytest

from examples.reference_graph import reference_graph as graph
from klio_dagster import FeatureGraphError
from klio_dagster.core.versions import make_data_version
from klio_dagster.planning.planner import FeatureLineage, Plan, plan, state_of

pytestmark = pytest.mark.unit

CURRENT = {f.name: f.version for f in graph}


def lineage(made: dict[str, dict[str, tuple[str, int]]]) -> dict[str, FeatureLineage]:
    """``{feature: {track: (code_version, storage_id)}}`` as the event log would give it; absent: never made.

    Each output's bytes differ by storage ID; each was made from its parents' outputs as given here.
    """
    versions: dict[str, dict[str, str]] = {}
    for name in graph.names:
        versions[name] = {}
        for track, (code, storage_id) in made.get(name, {}).items():
            inputs = {p: versions[p][track] for p in graph.stored_inputs(name) if track in versions[p]}
            versions[name][track] = make_data_version(code, f"{storage_id:016x}", inputs)
    return {
        name: FeatureLineage(versions[name], {t: i for t, (_, i) in made.get(name, {}).items()}) for name in graph.names
    }


def remade(state: dict[str, FeatureLineage], feature: str, track: str, digest: str) -> None:
    """``feature`` recomputed for ``track`` after its children, into bytes with ``digest``."""
    old = state[feature]
    versions = {**old.data_versions, track: old.data_versions[track].rsplit(":", 1)[0] + ":" + digest}
    state[feature] = FeatureLineage(versions, {**old.storage_ids, track: 10_000})


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


def test_an_output_made_from_a_parent_since_recomputed_into_other_bytes_is_stale():
    state = lineage(all_made(["t1"]))
    remade(state, "downsample", "t1", "f" * 16)
    assert state_of(graph, state, "speechiness", "t1") == "stale"
    assert state_of(graph, state, "downsample", "t1") == "materialized"


def test_a_parent_recomputed_into_the_same_bytes_leaves_its_children_current():
    state = lineage(all_made(["t1"]))
    remade(state, "downsample", "t1", state["downsample"].data_versions["t1"].rsplit(":", 1)[1])
    assert state_of(graph, state, "speechiness", "t1") == "materialized"


def test_a_parent_with_no_materialisation_leaves_its_children_as_they_are():
    made = all_made(["t1"])
    state = lineage(made)
    state["downsample"] = FeatureLineage({}, {})  # wiped
    assert state_of(graph, state, "speechiness", "t1") == "materialized"
    assert state_of(graph, state, "downsample", "t1") == "missing"


def test_an_output_recorded_without_input_versions_is_stale():
    state = lineage(all_made(["t1"]))
    state["speechiness"] = FeatureLineage({"t1": make_data_version(CURRENT["speechiness"], "0" * 16)}, {"t1": 99})
    assert state_of(graph, state, "speechiness", "t1") == "stale"


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
    assert work == Plan.of_pairs([("downsample", "t2")], [("downsample", "t1")])


def test_unknown_features_are_a_graph_error():
    with pytest.raises(FeatureGraphError, match="unknown feature"):
        plan(graph, lineage({}), ["loudness"], ["t1"])


def test_ten_thousand_tracks_half_made_plan_the_other_half():
    tracks = [f"t{i}" for i in range(10_000)]
    work = plan(graph, lineage(all_made(tracks[:5_000])), list(graph.names), tracks)
    assert len(work.to_compute) == 6 * 5_000 and len(work.skipped) == 6 * 5_000


def per_track_plan(graph, lineage, features, tracks, *, force=(), bottom_up=True, only=None) -> Plan:
    """The planner's specification, one track and one pair at a time: the planner before it worked by column."""
    requested = graph.check_names(features)
    forced, states = set(force), None if only is None else set(only)
    closures: dict[frozenset[str], list[str]] = {}
    by_feature: dict[str, tuple[list[str], list[str]]] = {}
    for track in tracks:
        targets = frozenset(f for f in requested if states is None or state_of(graph, lineage, f, track) in states)
        if targets not in closures:
            closures[targets] = graph.with_ancestors(targets) if bottom_up else [f for f in requested if f in targets]
        closure = closures[targets]
        computed: set[str] = set()
        for name in closure:
            needed = (
                (name in targets and name in forced)
                or any(p in computed for p in graph.stored_inputs(name))
                or state_of(graph, lineage, name, track) != "materialized"
            )
            if needed:
                computed.add(name)
            by_feature.setdefault(name, ([], []))[0 if needed else 1].append(track)
        for name in requested:
            if name not in closure:
                by_feature.setdefault(name, ([], []))[1].append(track)
    order = [name for name in graph.order if name in by_feature]
    return Plan.of_pairs(
        [(name, t) for name in order for t in by_feature[name][0]], [(name, t) for name in order for t in by_feature[name][1]]
    )


@pytest.mark.parametrize("seed", range(40))
def test_the_column_planner_decides_exactly_as_the_per_track_specification(seed):
    import random

    rng = random.Random(seed)
    tracks = [f"t{i}" for i in range(rng.randint(1, 30))]
    made: dict[str, dict[str, tuple[str, int]]] = {}
    for name in graph.names:  # some pairs current, some by an old code version, some missing
        made[name] = {
            t: (CURRENT[name] if rng.random() < 0.8 else "0-old", rng.randint(1, 10**6))
            for t in tracks if rng.random() < 0.7
        }
    state = lineage(made)
    for name in rng.sample(graph.names, 2):  # parents recomputed into new bytes after their children
        for track in rng.sample(tracks, min(3, len(tracks))):
            if track in state[name].data_versions:
                remade(state, name, track, f"{rng.randint(0, 10**6):016x}")
    features = rng.sample(graph.names, rng.randint(1, len(graph.names)))
    options = {
        "force": rng.sample(features, rng.randint(0, len(features))),
        "bottom_up": rng.random() < 0.8,
        "only": rng.choice([None, ["stale"], ["missing"], ["stale", "missing"]]),
    }
    assert plan(graph, state, features, tracks, **options) == per_track_plan(graph, state, features, tracks, **options), options
