"""The port of Klio's ``audio_spectrograms`` job (examples/audio_spectrograms.py, walked through in docs/features.md).

It runs through the CLI on generated 20-second tracks, in-process and on Beam's
local runner; its stored arrays are compared bit for bit with Klio's own
transforms (spotify/klio, examples/audio_spectrograms/transforms.py and
klio_audio's LoadAudio, GetSTFT, GetSpec) computed with librosa beside it.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from threadpoolctl import threadpool_limits

from klio_dagster import find_feature_location
from klio_dagster.demo.catalogue import music_like, speech_like

pytestmark = pytest.mark.integration

PORT = "examples.audio_spectrograms"
STORED = ("background", "foreground", "full_plot", "background_plot", "foreground_plot")


@pytest.fixture
def tracks(tmp_path, cli) -> dict[str, str]:
    """Two 20-second tracks (44.1 kHz: music-like FLAC, speech-like WAV), ingested; ID -> path."""
    paths = []
    for name, y in (("song.flac", music_like(120.0, 20.0, seed=3)), ("talk.wav", speech_like(20.0, seed=4))):
        path = tmp_path / name
        sf.write(path, y, 44_100, subtype="PCM_16")
        paths.append(path)
    code, out = cli("ingest", *map(str, paths))
    assert code == 0, out
    return dict(zip(out["registered"], map(str, paths)))


def klio_job(path: str) -> dict[str, np.ndarray]:
    """Klio's transforms, as its job chains them, with librosa (one BLAS thread, as the port's executors use)."""
    import librosa

    with threadpool_limits(1):
        y, _ = librosa.load(path, offset=10, duration=5)  # LoadAudio(offset=10, duration=5): sr=22,050, mono
        spectrogram, _ = librosa.magphase(librosa.stft(y=y))  # GetSTFT, GetMagnitude
        nn_filter = librosa.decompose.nn_filter(
            spectrogram, aggregate=np.median, metric="cosine", width=int(librosa.time_to_frames(2))
        )
        nn_filter = np.minimum(spectrogram, nn_filter)  # FilterNearestNeighbors
        net = spectrogram - nn_filter  # subtract_filter_from_full
        background = librosa.util.softmask(nn_filter, 2 * net, power=2) * spectrogram  # GetSoftMask(margin=2)
        foreground = librosa.util.softmask(net, 10 * nn_filter, power=2) * spectrogram  # GetSoftMask(margin=10)
    return {"background": background, "foreground": foreground}


def test_the_port_matches_klios_job_bit_for_bit_and_stores_only_what_is_looked_at(cli, klio_env, tracks, monkeypatch):
    monkeypatch.setenv("KLIO_DEFINITIONS", PORT)
    code, out = cli("materialize", *STORED, "--all-tracks")
    assert code == 0 and not out["failed"], out
    assert len(out["computed"]) == len(STORED) * len(tracks)

    store = klio_env / "store"
    assert sorted(p.name for p in store.iterdir()) == ["audio", "background", "foreground", "spectrograms"]
    for track, path in tracks.items():
        expected = klio_job(path)
        for name in ("background", "foreground"):
            got = np.load(store / name / f"{track}.npy")
            assert got.shape == (1025, 216) and np.array_equal(got, expected[name]), (track, name)
        for part in ("full", "background", "foreground"):  # where Klio's job wrote its plots: {track}-{part}.png
            png = (store / "spectrograms" / f"{track}-{part}.png").read_bytes()
            assert png.startswith(b"\x89PNG")
            width, height = sf_free_png_size(png)
            assert (width, height) == (760, 280)

    code, out = cli("materialize", *STORED, "--all-tracks")
    assert code == 0 and out["computed"] == []  # everything current: nothing recomputed
    first = next(iter(tracks))
    before = (store / "background" / f"{first}.npy").stat().st_mtime_ns
    code, out = cli("materialize", "foreground", "--tracks", first, "--force")
    assert out["computed"] == [["foreground", first]]  # one output of the call forced, its sibling left as it was
    assert (store / "background" / f"{first}.npy").stat().st_mtime_ns == before
    assert cli("plan", *STORED, "--all-tracks")[1]["to_compute"] == []  # the same bytes: the plots stay current

    code, report = cli("explain", "foreground_plot", next(iter(tracks)))
    assert report["params"] == {"sample_rate": 22_050, "hop_length": 512}
    (masks,) = [i for i in report["inputs"] if i["feature"] == "background"]
    assert masks["params"] == {"margin_background": 2, "margin_foreground": 10, "power": 2}
    assert masks["ephemeral_inputs"].keys() == {"magnitude", "nn_filter"}


def sf_free_png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_the_ports_assets_are_its_stored_outputs_and_a_param_change_makes_exactly_its_descendants_stale(
    cli, klio_env, tracks, monkeypatch
):
    from klio_dagster.cli.location import load_definitions

    location, _, _ = find_feature_location(load_definitions(PORT))
    keys = {k.to_user_string() for k in location.assets.keys}
    assert keys == set(STORED)  # the ephemeral stft, phase and nn_filter are not assets
    deps = {k.to_user_string(): {d.to_user_string() for d in v} for k, v in location.assets.asset_deps.items()}
    assert deps["background"] == {"audio"} and deps["full_plot"] == {"audio", "background", "foreground"}

    monkeypatch.setenv("KLIO_DEFINITIONS", PORT)
    assert cli("materialize", *STORED, "--all-tracks")[0] == 0
    changed = klio_env / "wider_filter.py"
    changed.write_text(
        "from examples.audio_spectrograms import audio_spectrograms_graph as g, stft, nn_filter, soft_masks, spectrogram_plots\n"
        "from klio_dagster import FeatureGraph, build_feature_definitions\n"
        "graph = FeatureGraph([stft, nn_filter.with_params(width_s=3.0), soft_masks, spectrogram_plots])\n"
        "defs = build_feature_definitions(graph, name='audio_spectrograms')\n"
    )
    monkeypatch.setenv("KLIO_DEFINITIONS", str(changed))
    code, out = cli("plan", *STORED, "--all-tracks", "--stale")
    assert code == 0 and {f for f, _ in out["to_compute"]} == set(STORED)
    code, rows = cli("status", next(iter(tracks)))
    why = {r["feature"]: r.get("why") or "" for r in rows}
    assert "ephemeral" not in why and "input 'nn_filter' is now version" in why["background"]

    only_plots = klio_env / "new_titles.py"
    only_plots.write_text(
        "from examples.audio_spectrograms import stft, nn_filter, soft_masks, spectrogram_plots\n"
        "from klio_dagster import FeatureGraph, build_feature_definitions\n"
        "graph = FeatureGraph([stft, nn_filter, soft_masks, spectrogram_plots.with_params(hop_length=512)])\n"
        "defs = build_feature_definitions(graph, name='audio_spectrograms')\n"
    )
    monkeypatch.setenv("KLIO_DEFINITIONS", str(only_plots))
    assert cli("plan", *STORED, "--all-tracks", "--stale")[1]["to_compute"] == []  # the same value: the same version


def test_the_port_runs_on_beams_local_runner_with_the_same_bytes(cli, klio_env, tracks, monkeypatch):
    beam = klio_env / "on_beam.py"
    beam.write_text(
        "from examples.audio_spectrograms import audio_spectrograms_graph\n"
        "from klio_dagster import FeatureExecutorResource, build_feature_definitions\n"
        "defs = build_feature_definitions(audio_spectrograms_graph, name='audio_spectrograms',\n"
        "    resources={'klio_executor': FeatureExecutorResource(mode='beam', num_workers=2)})\n"
    )
    monkeypatch.setenv("KLIO_DEFINITIONS", str(beam))
    code, out = cli("materialize", "background", "foreground", "--all-tracks")
    assert code == 0 and not out["failed"], out
    for track, path in tracks.items():
        expected = klio_job(path)
        for name in ("background", "foreground"):
            data = (klio_env / "store" / name / f"{track}.npy").read_bytes()
            assert np.array_equal(np.load(io.BytesIO(data)), expected[name])
    code, report = cli("explain", "background", next(iter(tracks)))
    assert report["executor"] == "beam/FnApiRunner" and report["pipeline_job"].startswith("klio-")
