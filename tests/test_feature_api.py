"""Defining features in Python, and mixing them with plain Dagster assets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, asset, materialize
from runs import run_plan

from klio_dagster import (
    Audio,
    FeatureExecutorResource,
    FeatureGraph,
    FeatureStoreResource,
    OutputEventsResource,
    build_feature_definitions,
    feature,
    tracks_partitions,
)
from klio_dagster.core.formats import BUILTIN_FORMATS
from klio_dagster.orchestration.resources import TrackSourcesResource
from klio_dagster.planning.lineage import load_lineage
from klio_dagster.planning.planner import plan
from klio_dagster.tiers import NativeTier

pytestmark = pytest.mark.unit


@asset
def loudness_reference() -> float:
    """A plain, unpartitioned Dagster asset that a feature depends on."""
    return 0.1


@feature(code_version="1", output="json", sample_rate=8000, deps=["loudness_reference"])
def peak(audio: Audio, track_id: str) -> dict:
    """Peak absolute amplitude of the track at 8 kHz."""
    return {"track": track_id, "peak": float(np.max(np.abs(audio.samples))), "sr": audio.sample_rate}


@feature(code_version="1", output="parquet")
def peak_table(peak: dict) -> pd.DataFrame:
    return pd.DataFrame([{"peak": peak["peak"]}])


graph = FeatureGraph([peak, peak_table])


@asset(partitions_def=tracks_partitions, deps=[peak_table.asset_key])
def peak_report(context, klio_store: FeatureStoreResource) -> None:
    """A plain partitioned asset reading a feature's stored output."""
    table = pd.read_parquet(klio_store.get_store().uri(f"peak_table/{context.partition_key}.parquet"))
    context.add_output_metadata({"peak": float(table["peak"].iloc[0])})


def test_decorator_infers_inputs_and_reserved_parameters():
    assert peak.inputs == () and peak.wants_audio and peak.wants_track_id and peak.sample_rate == 8000
    assert peak_table.inputs == ("peak",) and FeatureGraph([peak, peak_table]).upstream("peak_table") == ("peak",)
    assert peak.deps == ("loudness_reference",)
    assert peak.description == "Peak absolute amplitude of the track at 8 kHz."


def test_asset_metadata_names_a_sample_rate_only_for_features_that_decode_at_one():
    from examples.reference_graph import reference_graph
    from klio_dagster.orchestration.assets import build_feature_assets

    specs = {key.path[-1]: spec for key, spec in build_feature_assets(reference_graph).specs_by_key.items()}
    assert specs["downsample"].metadata["klio/sample_rate_hz"] == 22050
    for name in ("beat_tracking", "energy", "speechiness", "instrumentalness", "spectrogram"):
        assert "klio/sample_rate_hz" not in specs[name].metadata, name


def test_graph_errors_say_what_to_do():
    @feature(code_version="1")
    def a(b): ...

    @feature(code_version="1")
    def b(a): ...

    with pytest.raises(ValueError, match="cycle"):
        FeatureGraph([a, b])
    with pytest.raises(ValueError, match="not features of this graph"):
        FeatureGraph([peak_table])
    with pytest.raises(ValueError, match="used twice"):
        FeatureGraph([peak, peak])
    with pytest.raises(ValueError, match="unknown feature"):
        graph.check_names(["nope"])
    with pytest.raises(ValueError, match="unknown output format"):
        feature(code_version="1", output="mp4")


@pytest.mark.parametrize(
    ("name", "value"),
    [("npy", np.arange(5, dtype=np.float32)), ("json", {"a": 1}), ("parquet", pd.DataFrame({"x": [1.5]}))],
)
def test_formats_round_trip(name, value):
    fmt = BUILTIN_FORMATS[name]
    back = fmt.decode(fmt.encode(value))
    if isinstance(value, pd.DataFrame):
        pd.testing.assert_frame_equal(back, value)
    elif isinstance(value, np.ndarray):
        np.testing.assert_array_equal(back, value)
    else:
        assert back == value


def test_features_and_plain_assets_in_one_location(klio_env, catalogue):
    resources = {
        "klio_store": FeatureStoreResource(uri=str(klio_env / "store")),
        "klio_executor": FeatureExecutorResource(mode="in_process"),
        "klio_output": OutputEventsResource(),
        "klio_sources": TrackSourcesResource(),
    }
    defs = build_feature_definitions(graph, name="peaks", assets=[loudness_reference, peak_report], resources=resources)
    features = defs.get_assets_def("peak")
    instance = DagsterInstance.get()
    store = resources["klio_store"].get_store()
    ids = NativeTier().open(instance, store).ingest({t.track_id: str(t.path) for t in catalogue[:3]})

    # The asset graph: plain -> feature -> feature -> plain.
    graph_view = defs.resolve_asset_graph()
    assert AssetKey("loudness_reference") in graph_view.get(AssetKey("peak")).parent_keys
    assert AssetKey("peak_table") in graph_view.get(AssetKey("peak_report")).parent_keys

    # Batched run over all three tracks, then the plain downstream asset per partition (as the UI would).
    materialize([loudness_reference], instance=instance)
    work = plan(graph, load_lineage(instance, graph.names, ids), ["peak_table"], ids)
    outcome = run_plan(defs, work)
    assert len(outcome.computed) == 6 and outcome.failed == []
    stored = json.loads((klio_env / "store" / "peak" / f"{ids[0]}.json").read_text())
    assert stored["track"] == ids[0] and stored["sr"] == 8000
    # Its provenance names the plain asset it depends on, so Dagster's staleness (the UI's) finds it fresh.
    from dagster._utils.test.data_versions import get_stale_status_resolver

    resolver = get_stale_status_resolver(instance, graph_view.assets_defs)
    assert resolver.get_status(AssetKey("peak"), ids[0]).value == "FRESH"
    assert resolver.get_status(AssetKey("peak_table"), ids[0]).value == "FRESH"
    result = materialize([peak_report, features], selection=[peak_report], partition_key=ids[1], instance=instance, resources=resources)
    assert result.success

    # A UI-style partitioned run of the feature asset itself recomputes that partition.
    result = materialize([features], partition_key=ids[2], instance=instance, resources=resources, selection=[AssetKey("peak")])
    assert result.success
    mats = result.asset_materializations_for_node("peaks")
    assert [(m.asset_key.path[-1], m.partition) for m in mats] == [("peak", ids[2])]


@pytest.mark.parametrize(
    ("preview", "kept", "why"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"0" * 100, True, None),
        (b"<svg onload=alert(1)>", False, "not PNG, JPEG or WebP"),
        (b"\xff\xd8\xff" + b"0" * 300_000, False, "over the 200,000-byte limit"),
    ],
)
def test_previews_are_images_of_bounded_size(tmp_path, preview, kept, why):
    from klio_dagster import FeatureGraph, FeatureOutput, TrackTask, compute_track, feature
    from klio_dagster.storage.stores import LocalFeatureStore

    @feature(code_version="1", output="json")
    def pictured(track_id: str) -> FeatureOutput:
        return FeatureOutput({"ok": True}, preview=preview)

    (result,) = compute_track(TrackTask("t", ("pictured",)), FeatureGraph([pictured]), LocalFeatureStore(tmp_path))
    assert result.ok and (result.preview_b64 is not None) == kept
    assert (why is None and "preview_omitted" not in result.metadata) or why in result.metadata["preview_omitted"]
