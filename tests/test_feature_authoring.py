"""Feature authoring: multi-output, parameters, decode windows, ephemeral features, formats, plots, paths, versions.

Each test runs the product's per-track computation on generated audio
(``klio_dagster.testing.compute_on_audio``) or the pure planner on hand-made lineage.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
import soundfile as sf

from examples.reference_graph import reference_graph
from klio_dagster import (
    BUILTIN_FORMATS,
    Audio,
    FeatureGraph,
    FeatureGraphError,
    FeatureOut,
    OutputFormat,
    UnknownFormat,
    chroma_figure,
    decode_file,
    feature,
    figure_image,
    mel_figure,
    mfcc_figure,
    multi_feature,
    spectrogram_figure,
    waveform_figure,
)
from klio_dagster.core.execution import TrackTask, compute_track
from klio_dagster.core.versions import make_data_version
from klio_dagster.planning.planner import FeatureLineage, plan, stale_cause, state_of
from klio_dagster.storage.registry import record_sources
from klio_dagster.storage.stores import LocalFeatureStore
from klio_dagster.testing import FeatureFailed, compute_on_audio

pytestmark = pytest.mark.unit

SR = 22_050


def tone(seconds: float, sr: int = SR, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.4 * np.sin(2 * np.pi * freq * t)
    return np.stack([y, 0.5 * y]).astype(np.float32) if channels == 2 else y.astype(np.float32)


# --- multi-output features ---------------------------------------------------------------------


def split_features(calls: list[str]):
    @multi_feature(
        outs={
            "low": FeatureOut(output="npy", schema=pa.DataFrameSchema({"value": pa.Column(float, pa.Check.ge(0))})),
            "high": FeatureOut(output="json", code_version="7"),
        },
        code_version="1",
        sample_rate=SR,
    )
    def split(audio: Audio) -> dict:
        calls.append("split")
        level = float(np.abs(audio.samples).mean())
        return {"low": np.abs(audio.samples[:10]).astype(float), "high": {"level": level}}

    @feature(code_version="1", output="json")
    def uses_high(high: dict) -> dict:
        return {"double": 2 * high["level"]}

    return split, uses_high


def test_a_multi_output_feature_runs_once_per_track_and_each_output_is_its_own_feature():
    calls: list[str] = []
    split, uses_high = split_features(calls)
    graph = FeatureGraph([split, uses_high])
    assert graph.names == ("low", "high", "uses_high")
    assert graph["low"].output_format.name == "npy" and graph["high"].output_format.name == "json"
    assert graph["low"].schema is not None and graph["high"].schema is None
    assert graph["low"].code_version == "1" and graph["high"].code_version == "7"
    assert graph.siblings("low") == ("low", "high")
    values = compute_on_audio(graph, tone(1.0), SR)
    assert calls == ["split"]  # one call made both outputs
    assert values["low"].shape == (10,) and values["uses_high"]["double"] == pytest.approx(2 * values["high"]["level"])


def test_only_the_outputs_a_plan_asks_for_are_written(tmp_path):
    calls: list[str] = []
    split, uses_high = split_features(calls)
    graph = FeatureGraph([split, uses_high])
    store = LocalFeatureStore(tmp_path / "store")
    source = tmp_path / "a.wav"
    sf.write(source, tone(1.0), SR, subtype="FLOAT")
    record_sources(store, {"a": str(source)})
    results = compute_track(TrackTask("a", ("high",)), graph, store)
    assert [r.feature for r in results] == ["high"] and results[0].ok
    assert (tmp_path / "store/high/a.json").exists() and not (tmp_path / "store/low").exists()


def test_a_multi_output_feature_that_misses_an_output_fails_that_output_alone(tmp_path):
    @multi_feature(outs={"left": FeatureOut("json"), "right": FeatureOut("json")}, code_version="1")
    def halves(track_id: str) -> dict:
        return {"left": {"id": track_id}}

    results = run_track(tmp_path, FeatureGraph([halves]), ("left", "right"))
    assert results["left"].ok
    assert "returned no 'right'" in results["right"].error


def test_a_multi_output_feature_must_return_a_mapping(tmp_path):
    @multi_feature(outs={"one": FeatureOut("json")}, code_version="1")
    def wrong(track_id: str) -> list:
        return [track_id]

    assert "must return a mapping" in run_track(tmp_path, FeatureGraph([wrong]), ("one",))["one"].error


def run_track(tmp_path: Path, graph: FeatureGraph, features: tuple[str, ...], samples=None, sr: int = SR) -> dict:
    store = LocalFeatureStore(tmp_path / "store")
    source = tmp_path / "t.wav"
    sf.write(source, tone(1.0) if samples is None else samples.T, sr, subtype="FLOAT")
    record_sources(store, {"t": str(source)})
    return {r.feature: r for r in compute_track(TrackTask("t", features), graph, store)}


# --- parameters and versions -------------------------------------------------------------------


@feature(code_version="1", output="json", params={"scale": 2.0, "label": "x"})
def scaled(track_id: str, scale: float, label: str) -> dict:
    return {"value": scale * len(track_id), "label": label}


@feature(code_version="1", output="json")
def child_of_scaled(scaled: dict) -> dict:
    return {"value": scaled["value"] + 1}


@feature(code_version="1", output="json")
def sibling(track_id: str) -> dict:
    return {"n": len(track_id)}


def test_params_are_passed_and_are_not_inputs():
    graph = FeatureGraph([scaled, child_of_scaled])
    assert scaled.inputs == () and dict(scaled.params) == {"scale": 2.0, "label": "x"}
    values = compute_on_audio(graph, tone(0.5), SR, track_id="abcd")
    assert values["scaled"] == {"value": 8.0, "label": "x"} and values["child_of_scaled"] == {"value": 9.0}


def test_a_function_that_changes_its_parameter_changes_only_its_copy():
    @feature(code_version="1", output="json", params={"seen": []})
    def appends(track_id: str, seen: list) -> dict:
        seen.append(track_id)
        return {"seen": list(seen)}

    graph = FeatureGraph([appends])
    assert compute_on_audio(graph, tone(0.2), SR, track_id="a")["appends"] == {"seen": ["a"]}
    assert compute_on_audio(graph, tone(0.2), SR, track_id="b")["appends"] == {"seen": ["b"]}
    assert dict(graph["appends"].params) == {"seen": []}


def test_changing_a_param_changes_the_version_of_the_feature_and_of_its_descendants_only():
    before = FeatureGraph([scaled, child_of_scaled, sibling])
    after = FeatureGraph([scaled.with_params(scale=3.0), child_of_scaled, sibling])
    assert after["scaled"].code_version == "1"
    assert after["scaled"].version != before["scaled"].version
    assert after["child_of_scaled"].version != before["child_of_scaled"].version
    assert after["sibling"].version == before["sibling"].version == "1"
    assert FeatureGraph([scaled.with_params(scale=2.0), child_of_scaled])["scaled"].version == before["scaled"].version


def test_declared_libraries_are_part_of_the_version():
    plain = FeatureGraph([sibling])["sibling"].version
    versioned = FeatureGraph([replace(sibling, libraries=("numpy",))])["sibling"].version
    assert plain == "1" and versioned.startswith("1+") and versioned != plain


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: feature(code_version="1", params={"nope": 1}, name="f")(lambda track_id: 0), "does not take"),
        (lambda: feature(code_version="1", params={"audio": 1}, name="f")(lambda audio: 0), "reserved"),
        (lambda: feature(code_version="1", params={"x": object()}, name="f")(lambda x: 0), "JSON values"),
        (lambda: scaled.with_params(unknown=1), "has no parameter"),
        (lambda: feature(code_version="1", path="{feature}/all.npy", name="f")(lambda track_id: 0), "must contain {track}"),
        (lambda: feature(code_version="1", path="../{track}.{ext}", name="f")(lambda track_id: 0), "no '..'"),
        (lambda: feature(code_version="1", path="{feature}/{trak}.{ext}", name="f")(lambda track_id: 0), "may use only"),
        (lambda: feature(code_version="1", offset_s=-1)(lambda audio: 0), "offset_s"),
        (lambda: feature(code_version="1", duration_s=0)(lambda audio: 0), "duration_s"),
        (lambda: feature(code_version="1", output="svg")(lambda audio: 0), "unknown output format 'svg'"),
    ],
)
def test_bad_declarations_say_what_is_wrong(make, message):
    with pytest.raises((FeatureGraphError, UnknownFormat), match=message.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")):
        make()


def made(graph: FeatureGraph, tracks, versions_from: FeatureGraph | None = None) -> dict[str, FeatureLineage]:
    """Lineage of every feature of ``graph`` made for ``tracks`` by the versions of ``versions_from``."""
    source = versions_from or graph
    out: dict[str, dict[str, str]] = {}
    for i, name in enumerate(graph.names):
        out[name] = {
            t: make_data_version(
                source[name].version, f"{i:016x}", {p: out[p][t] for p in graph.stored_inputs(name)}
            )
            for t in tracks
        }
    return {n: FeatureLineage(v, {t: 1 for t in v}) for n, v in out.items()}


def test_a_bumped_code_version_makes_all_descendants_stale_transitively_and_nothing_else():
    old = reference_graph
    bumped = FeatureGraph([replace(f, code_version="next") if f.name == "downsample" else f for f in old.all_features])
    lineage = made(old, ["t"])
    states = {n: state_of(bumped, lineage, n, "t") for n in bumped.names}
    assert set(states.values()) == {"stale"}  # every feature descends from downsample
    bumped_beats = FeatureGraph([replace(f, code_version="next") if f.name == "beat_tracking" else f for f in old.all_features])
    states = {n: state_of(bumped_beats, lineage, n, "t") for n in old.names}
    assert states == {**dict.fromkeys(old.names, "materialized"), "beat_tracking": "stale", "energy": "stale"}
    assert "made by version" in stale_cause(bumped_beats, lineage, "energy", "t")


def test_a_bump_upstream_in_another_location_makes_its_readers_stale():
    from examples.harmony import harmony_graph as old

    new_downsample = replace(reference_graph["downsample"], code_version="next", version="")
    new = FeatureGraph([old[n] for n in old.names], external=[new_downsample])
    assert old["downsample"].version == reference_graph["downsample"].version  # both locations agree
    assert new["key"].version != old["key"].version
    downsample = make_data_version(old["downsample"].version, "0" * 16)
    lineage = {
        "downsample": FeatureLineage({"t": downsample}, {"t": 1}),
        "key": FeatureLineage({"t": make_data_version(old["key"].version, "1" * 16, {"downsample": downsample})}, {"t": 2}),
    }
    assert state_of(old, lineage, "key", "t") == "materialized"
    assert state_of(new, lineage, "key", "t") == "stale"


def test_a_graph_extended_with_a_feature_keeps_its_own_features_and_versions():
    @feature(code_version="1", output="json")
    def tempo_class(beat_tracking: pd.DataFrame) -> dict:
        return {"fast": bool(beat_tracking["tempo_bpm"].iloc[0] > 120) if len(beat_tracking) else False}

    graph = reference_graph.extended([tempo_class])
    assert graph.names == (*reference_graph.names, "tempo_class")
    assert all(graph[n].version == reference_graph[n].version for n in reference_graph.names)
    ephemeral = ephemeral_graph([])
    assert ephemeral.extended([]).ephemeral_names == ("spectrum",)


def test_external_features_with_inputs_must_come_from_their_graph():
    with pytest.raises(FeatureGraphError, match="their_graph"):
        FeatureGraph([sibling], external=[replace(FeatureGraph([scaled, child_of_scaled])["child_of_scaled"], version="")])


def test_only_missing_or_only_stale_pairs_are_planned():
    graph = reference_graph
    lineage = made(graph, ["t1", "t2"])
    del lineage["energy"].data_versions["t1"]  # t1: energy missing
    bumped = FeatureGraph([replace(f, code_version="next") if f.name == "speechiness" else f for f in graph.all_features])
    missing = plan(bumped, lineage, ["energy", "speechiness"], ["t1", "t2"], only=["missing"])
    assert missing.to_compute == [("energy", "t1")]
    stale = plan(bumped, lineage, ["energy", "speechiness"], ["t1", "t2"], only=["stale"])
    assert stale.to_compute == [("speechiness", "t1"), ("speechiness", "t2")]
    both = plan(bumped, lineage, ["energy", "speechiness"], ["t1", "t2"], only=["stale", "missing"])
    assert sorted(both.to_compute) == [("energy", "t1"), ("speechiness", "t1"), ("speechiness", "t2")]
    assert len(set(both.skipped)) == len(both.skipped)


# --- decode windows and channel layout ---------------------------------------------------------


@pytest.mark.parametrize(("fmt", "subtype"), [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")])
def test_a_decode_window_is_librosa_loads_bit_for_bit_and_exact_for_mp3(tmp_path, fmt, subtype):
    import librosa

    path = tmp_path / f"x.{fmt}"
    sf.write(path, tone(14.0, 44_100, channels=2).T, 44_100, subtype=subtype)
    if fmt == "mp3":  # librosa seeks, and libsndfile's MP3 seek shifts what follows: ours is a full decode's window
        full, native = sf.read(path, dtype="float32")
        window = full[int(10.0 * native) : int(10.0 * native) + int(3.0 * native)].T.mean(axis=0)
        expected = librosa.resample(window, orig_sr=native, target_sr=SR, res_type="soxr_hq")
    else:
        expected, _ = librosa.load(path, sr=SR, offset=10.0, duration=3.0)
    with open(path, "rb") as fh:
        got, sr = decode_file(fh, sr=SR, offset_s=10.0, duration_s=3.0)
    assert sr == SR and got.shape == expected.shape and np.array_equal(got, expected)


def test_a_window_past_the_end_fails_with_the_track_length(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, tone(2.0), SR)
    from klio_dagster import AudioDecodeError

    with open(path, "rb") as fh, pytest.raises(AudioDecodeError, match=r"starts at 5.0 s, after the end of the track \(2.00 s\)"):
        decode_file(fh, offset_s=5.0)


def test_features_receive_their_own_window_rate_and_channels(tmp_path):
    @feature(code_version="1", output="json", sample_rate=16_000, mono=False, offset_s=0.5, duration_s=0.25)
    def window(audio: Audio) -> dict:
        return {"shape": list(audio.samples.shape), "sr": audio.sample_rate}

    @feature(code_version="1", output="json")
    def whole(audio: Audio) -> dict:
        return {"shape": list(audio.samples.shape), "sr": audio.sample_rate}

    results = run_track(tmp_path, FeatureGraph([window, whole]), ("window", "whole"), samples=tone(1.0, 44_100, channels=2), sr=44_100)
    assert results["window"].ok, results["window"].error
    assert results["window"].metadata["decode"] == {"sample_rate": 16_000, "mono": False, "offset_s": 0.5, "duration_s": 0.25}
    values = {n: __import__("json").loads((tmp_path / f"store/{n}/t.json").read_text()) for n in ("window", "whole")}
    assert values["window"] == {"shape": [2, 4000], "sr": 16_000}
    assert values["whole"] == {"shape": [44_100], "sr": 44_100}


# --- ephemeral features ------------------------------------------------------------------------


def ephemeral_graph(calls: list[str]) -> FeatureGraph:
    @feature(code_version="1", ephemeral=True, sample_rate=SR, params={"n_fft": 512})
    def spectrum(audio: Audio, n_fft: int) -> np.ndarray:
        calls.append("spectrum")
        return np.abs(np.fft.rfft(audio.samples[:n_fft]))

    @feature(code_version="1", output="json")
    def peak_bin(spectrum: np.ndarray) -> dict:
        return {"bin": int(np.argmax(spectrum))}

    @feature(code_version="1", output="json")
    def energy_total(spectrum: np.ndarray) -> dict:
        return {"sum": float(spectrum.sum())}

    return FeatureGraph([spectrum, peak_bin, energy_total])


def test_an_ephemeral_feature_is_computed_once_in_memory_and_never_stored(tmp_path):
    calls: list[str] = []
    graph = ephemeral_graph(calls)
    assert graph.names == ("peak_bin", "energy_total") and graph.ephemeral_names == ("spectrum",)
    assert graph.upstream("peak_bin") == ("audio",)  # its asset reads the source, through the ephemeral
    results = run_track(tmp_path, graph, ("peak_bin", "energy_total"))
    assert all(r.ok for r in results.values()) and calls == ["spectrum"]
    assert not (tmp_path / "store/spectrum").exists()
    assert results["peak_bin"].metadata["ephemeral_inputs"] == {"spectrum": graph["spectrum"].version}


def test_an_ephemeral_feature_cannot_be_materialised_and_its_params_make_its_readers_stale():
    graph = ephemeral_graph([])
    with pytest.raises(FeatureGraphError, match=r"\['spectrum'\] are ephemeral.*\['energy_total', 'peak_bin'\]"):
        graph.check_names(["spectrum"])
    # Read through another ephemeral feature: the stored features to ask for, not the ephemeral in between.
    with pytest.raises(FeatureGraphError, match=r"\(\['beat_tracking', 'instrumentalness', 'spectrogram', 'speechiness'\]\)"):
        reference_graph.check_names(["mel_power"])
    changed = FeatureGraph([graph["spectrum"].with_params(n_fft=1024), graph["peak_bin"], graph["energy_total"]])
    assert changed["peak_bin"].version != graph["peak_bin"].version


def test_an_ephemeral_failure_fails_each_reader_with_its_error(tmp_path):
    @feature(code_version="1", ephemeral=True)
    def broken(track_id: str) -> int:
        raise ValueError("no good")

    @feature(code_version="1", output="json")
    def reader(broken: int) -> dict:
        return {}

    results = run_track(tmp_path, FeatureGraph([broken, reader]), ("reader",))
    assert results["reader"].error == "ValueError: no good"


# --- output formats and paths ------------------------------------------------------------------


def svg_format() -> OutputFormat:
    def encode(fig) -> bytes:
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        return buf.getvalue()

    return OutputFormat("svg", "svg", encode, lambda b: b.decode(), media_type="image/svg+xml")


def test_a_format_of_your_own_stores_its_bytes_with_its_extension(tmp_path):
    @feature(code_version="1", output=svg_format(), sample_rate=SR)
    def wave_svg(audio: Audio):
        return waveform_figure(audio.samples, sr=audio.sample_rate, title="wave")

    results = run_track(tmp_path, FeatureGraph([wave_svg]), ("wave_svg",))
    assert results["wave_svg"].ok, results["wave_svg"].error
    text = (tmp_path / "store/wave_svg/t.svg").read_text()
    assert text.startswith("<?xml") and "<svg" in text


def test_png_takes_a_figure_deterministically_an_array_and_only_real_png_bytes():
    png = BUILTIN_FORMATS["png"]
    fig = spectrogram_figure(np.random.default_rng(0).uniform(-80, 0, (64, 40)), sr=SR, title="t")
    first, second = png.encode(fig), png.encode(fig)
    assert first.startswith(b"\x89PNG") and first == second
    assert png.encode(np.arange(12.0).reshape(3, 4)).startswith(b"\x89PNG")
    assert png.encode(first) == first
    for bad, message in ((b"GIF89a...", "not a PNG"), (np.zeros((2, 2, 2)), "2-D numeric array"), (np.array([[np.nan]]), "NaN")):
        with pytest.raises(TypeError, match=message):
            png.encode(bad)
    with pytest.raises(TypeError):
        BUILTIN_FORMATS["json"] = png  # read-only: add a format by passing your own OutputFormat


def test_an_output_path_template_places_the_output(tmp_path):
    @feature(code_version="1", output="json", path="by_shard/{shard}/{track}-{feature}.{ext}")
    def placed(track_id: str) -> dict:
        return {"id": track_id}

    results = run_track(tmp_path, FeatureGraph([placed]), ("placed",))
    name = placed.object_name("t")
    assert name.startswith("by_shard/") and name.endswith("/t-placed.json") and len(name.split("/")[1]) == 2
    assert results["placed"].uri == str(tmp_path / "store" / name) and (tmp_path / "store" / name).exists()


# --- plots -------------------------------------------------------------------------------------


def test_each_plot_is_a_figure_with_labelled_axes_and_encodes_as_a_small_image():
    import librosa

    y = tone(3.0)
    S_db = librosa.amplitude_to_db(np.abs(librosa.stft(y)), ref=np.max)
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR))
    figures = {
        "waveform": waveform_figure(y, sr=SR, title="w"),
        "spectrogram": spectrogram_figure(S_db, sr=SR, title="s"),
        "mel": mel_figure(mel, sr=SR, title="m"),
        "mfcc": mfcc_figure(librosa.feature.mfcc(y=y, sr=SR), sr=SR),
        "chroma": chroma_figure(librosa.feature.chroma_stft(y=y, sr=SR), sr=SR),
    }
    for name, fig in figures.items():
        ax = fig.axes[0]
        assert ax.get_xlabel() == "time (s)", name
        assert ax.get_ylabel(), name
        for fmt, magic in (("webp", b"RIFF"), ("png", b"\x89PNG"), ("jpeg", b"\xff\xd8\xff")):
            data = figure_image(fig, fmt)
            assert data.startswith(magic) and len(data) < 200_000, (name, fmt)
    assert figures["spectrogram"].axes[0].get_yscale() == "symlog"  # librosa's log-frequency axis


def test_compute_on_audio_reports_every_failure():
    @feature(code_version="1", output="json")
    def fails(track_id: str) -> dict:
        raise RuntimeError("broken on purpose")

    with pytest.raises(FeatureFailed, match="fails: RuntimeError: broken on purpose"):
        compute_on_audio(FeatureGraph([fails]), tone(0.2), SR)


def test_as_frame_still_validates_every_format():
    from klio_dagster import as_frame

    assert list(as_frame({"a": 1}).columns) == ["a"]
    assert as_frame(pd.DataFrame({"x": [1]})).shape == (1, 1)


def test_estimates_count_a_windowed_feature_at_its_window_not_the_track():
    from examples.audio_spectrograms import audio_spectrograms_graph as port
    from klio_dagster.planning.estimate import FeatureCost, WorkTally, estimate, header_minutes
    from klio_dagster.planning.planner import Plan

    assert {port.window_s(n) for n in port.names} == {5.0} and reference_graph.window_s("energy") is None
    minutes = header_minutes(lambda track: 180.0)  # 3-minute tracks
    work = Plan.of_pairs([("background", "t1"), ("background", "t2"), ("energy", "t1")])
    costs = {"background": FeatureCost(10, 0.5, 6.0), "energy": FeatureCost(10, 0.3, 0.1)}
    cost = estimate(WorkTally().add(work), costs, 2, audio_minutes=minutes, windows={"background": 5.0, "energy": None}, beam=False)
    assert cost["per_feature"]["background"]["cpu_s"] == pytest.approx(2 * 6.0 * 5 / 60)  # 5 s of each track
    assert cost["per_feature"]["energy"]["cpu_s"] == pytest.approx(0.1 * 3)  # the whole 3 minutes
    assert cost["workers"] == 2 and cost["wall_s"] == pytest.approx(cost["cpu_s"] / 2, abs=0.1)


def test_the_estimates_sample_of_a_paged_plan_is_bounded_and_uniform():
    from klio_dagster.planning.estimate import WorkTally
    from klio_dagster.planning.planner import Plan

    tally = WorkTally(sample_size=100)
    for page in range(50):  # 50 pages of 1,000 tracks
        tally.add(Plan.of_pairs([("energy", f"t{page * 1000 + i:05d}") for i in range(1000)]))
    sample = tally.samples["energy"]
    assert tally.pairs == {"energy": 50_000} and tally.tracks == 50_000
    assert len(sample) == 100 == len(set(sample))
    assert 15 <= sum(int(t[1:]) < 25_000 for t in sample) <= 85  # from the whole stream, not its start
