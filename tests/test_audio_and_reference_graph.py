"""Audio helpers and the reference features on generated audio with known ground truth."""

from __future__ import annotations

import io
import time

import numpy as np
import pandera.errors
import PIL.Image
import pytest

from examples import descriptors
from examples.reference_graph import (
    SAMPLE_RATE,
    beat_tracking,
    downsample,
    energy,
    instrumentalness,
    mel_power,
    pulse_and_pauses,
    reference_graph,
    spectrogram,
    speechiness,
)
from klio_dagster import Audio, AudioDecodeError
from klio_dagster.core.audio import decode, rms_per_interval
from klio_dagster.core.formats import as_frame
from klio_dagster.demo.catalogue import click_track, music_like, speech_like

pytestmark = pytest.mark.unit


def value_of(feature, audio: Audio, **stored):
    """``feature``'s value for ``audio`` (a downsampled track), its ephemeral inputs computed from it as the graph does."""
    mel = mel_power.fn(audio)
    inputs = {"downsample": audio, "mel_power": mel, "pulse_and_pauses": pulse_and_pauses.fn(audio, mel), **stored}
    return feature.fn(**{name: inputs[name] for name in feature.inputs})


@pytest.mark.parametrize("index", range(4))  # WAV, FLAC, OGG, MP3
def test_decode_every_demo_format_to_mono_22050(catalogue, index):
    track = catalogue[index]
    y, sr = decode(track.path.read_bytes(), sr=SAMPLE_RATE)
    assert sr == SAMPLE_RATE and y.ndim == 1 and y.dtype == np.float32
    assert abs(len(y) / sr - 6.0) < 0.1  # MP3 adds encoder padding
    assert np.max(np.abs(y)) > 0.05


@pytest.mark.parametrize(
    ("data", "message"), [(b"", "empty"), (b"RIFF\x00\x00\x00\x00WAVE", "cannot decode"), (b"\x00" * 1000, "cannot decode")]
)
def test_decode_rejects_bad_files(data, message):
    with pytest.raises(AudioDecodeError, match=message):
        decode(data, name="bad.wav")


def test_rms_per_interval_matches_direct_computation():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(1000).astype(np.float32)
    edges = np.array([0.0, 0.01, 0.035, 0.1])
    got = rms_per_interval(y, 10_000, edges)
    want = [np.sqrt(np.mean(y[a:b] ** 2)) for a, b in ((0, 100), (100, 350), (350, 1000))]
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("bpm", [90.0, 120.0, 140.0])
def test_beat_tracking_recovers_click_tempo(bpm):
    y = Audio(click_track(bpm, 12.0, sr=SAMPLE_RATE), SAMPLE_RATE)
    table = value_of(beat_tracking, y).value
    assert abs(table["tempo_bpm"].iloc[0] - bpm) / bpm < 0.04
    intervals = np.diff(table["time_s"].to_numpy())
    assert abs(np.median(intervals) - 60 / bpm) < 0.02
    beat_tracking.schema.validate(as_frame(table))


def test_energy_per_beat_interval_is_louder_for_louder_signal():
    y = click_track(120.0, 8.0, sr=SAMPLE_RATE)
    beats = value_of(beat_tracking, Audio(y, SAMPLE_RATE)).value
    quiet, loud = energy.fn(Audio(0.1 * y, SAMPLE_RATE), beats).value, energy.fn(Audio(y, SAMPLE_RATE), beats).value
    assert len(loud) == len(beats) + 1
    np.testing.assert_allclose(loud["rms"], 10 * quiet["rms"], rtol=1e-4)
    assert loud["start_s"].iloc[0] == 0.0 and abs(loud["end_s"].iloc[-1] - 8.0) < 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_speechiness_and_instrumentalness_separate_speech_from_music(seed):
    speech = Audio(speech_like(15.0, sr=SAMPLE_RATE, seed=seed), SAMPLE_RATE)
    music = Audio(music_like(110.0 + 10 * seed, 15.0, sr=SAMPLE_RATE, seed=seed), SAMPLE_RATE)
    clicks = Audio(click_track(100.0 + 20 * seed, 15.0, sr=SAMPLE_RATE, seed=seed), SAMPLE_RATE)
    s = {k: value_of(speechiness, y).value for k, y in (("speech", speech), ("music", music), ("clicks", clicks))}
    i = {k: value_of(instrumentalness, y).value for k, y in (("speech", speech), ("music", music), ("clicks", clicks))}
    assert s["speech"]["speechiness"] > 0.7
    assert s["music"]["speechiness"] < 0.35 and s["clicks"]["speechiness"] < 0.35
    assert i["speech"]["instrumentalness"] < 0.3
    assert i["music"]["instrumentalness"] > 0.65 and i["clicks"]["instrumentalness"] > 0.65
    for value in (*s.values(), *i.values()):
        assert all(0.0 <= v <= 1.0 for v in value.values())


def test_scores_are_deterministic():
    y = speech_like(8.0, sr=SAMPLE_RATE, seed=4)
    assert value_of(speechiness, Audio(y, SAMPLE_RATE)).value == value_of(speechiness, Audio(y.copy(), SAMPLE_RATE)).value


def test_silence_scores_do_not_divide_by_zero():
    silence = np.zeros(SAMPLE_RATE * 3, dtype=np.float32)
    assert descriptors.pause_ratio(silence) == 1.0
    assert descriptors.rhythmic_regularity(silence, SAMPLE_RATE) == 0.0


def test_spectrogram_schema_and_preview():
    out = value_of(spectrogram, Audio(music_like(120.0, 5.0, sr=SAMPLE_RATE), SAMPLE_RATE))
    assert out.value.shape[0] == 128 and out.value.max() <= 0.0 and out.value.min() >= -80.0
    assert out.preview[:4] == b"RIFF" and out.preview[8:12] == b"WEBP"
    picture = PIL.Image.open(io.BytesIO(out.preview))
    assert picture.size == (760, 280)  # readable: time and frequency axes, a dB colour bar
    spectrogram.schema.validate(as_frame(out.value))


def test_schemas_reject_bad_values():
    with pytest.raises(pandera.errors.SchemaError):
        speechiness.schema.validate(as_frame({"speechiness": 1.5, "rhythmic_regularity": 0.1, "pause_ratio": 0.2}))
    with pytest.raises(pandera.errors.SchemaError):
        downsample.schema.validate(as_frame(np.array([0.0, np.nan], dtype=np.float32)))


def test_downsample_passes_decoded_audio_through():
    audio = Audio(np.ones(SAMPLE_RATE, dtype=np.float32) * 0.5, SAMPLE_RATE)
    assert downsample.fn(audio).value is audio


@pytest.mark.parametrize("sr", [16_000, 44_100])
def test_children_of_downsample_take_its_rate_from_the_audio_they_receive(sr):
    """Change downsample's rate and its children stay right: none assumes 22,050 Hz."""
    y = Audio(click_track(120.0, 12.0, sr=sr), sr)
    beats = value_of(beat_tracking, y).value
    assert abs(beats["tempo_bpm"].iloc[0] - 120.0) < 5.0
    assert abs(energy.fn(y, beats).value["end_s"].iloc[-1] - 12.0) < 1e-3
    assert value_of(spectrogram, y).value.shape[1] == 1 + len(y.samples) // 512


def test_stored_audio_keeps_its_samples_rate_and_channels():
    from klio_dagster.core.formats import get_format

    wav = get_format("audio")
    mono = Audio(np.linspace(-1, 1, 1000, dtype=np.float32), 16_000)
    stereo = Audio(np.stack([mono.samples, -mono.samples]), 8_000)
    for value in (mono, stereo):
        back = wav.decode(wav.encode(value))
        assert back.sample_rate == value.sample_rate
        np.testing.assert_array_equal(back.samples, value.samples)
    with pytest.raises(TypeError, match="Audio"):
        wav.encode(mono.samples)


def test_reference_graph_shape():
    assert reference_graph.names == ("downsample", "beat_tracking", "energy", "speechiness", "instrumentalness", "spectrogram")
    assert reference_graph.with_ancestors(["energy"]) == ["downsample", "beat_tracking", "energy"]
    assert reference_graph.descendants(["beat_tracking"]) == ["energy"]
    assert reference_graph.descendants(["audio"]) == list(reference_graph.names)


def test_long_ogg_files_encode_and_decode(tmp_path):
    from klio_dagster.demo.catalogue import SAMPLE_RATE as CATALOGUE_SR
    from klio_dagster.demo.catalogue import write_audio

    y = speech_like(180.0, sr=CATALOGUE_SR, seed=1)
    path = tmp_path / "long.ogg"
    write_audio(path, np.stack([y, y], axis=1), CATALOGUE_SR, "OGG", "VORBIS")
    decoded, sr = decode(path.read_bytes(), sr=SAMPLE_RATE)
    assert sr == SAMPLE_RATE and abs(len(decoded) / sr - 180.0) < 0.1


def test_stored_audio_is_the_same_bytes_every_time():
    """A data version is a digest of the bytes: writing the same audio twice must give the same file."""
    from klio_dagster.core.formats import get_format

    audio = Audio(np.sin(np.arange(4000, dtype=np.float32) / 10), 8_000)
    wav = get_format("audio")
    first = wav.encode(audio)
    time.sleep(1.1)  # libsndfile's PEAK chunk records the second it was written
    assert wav.encode(audio) == first
    decoded, sr = decode(first)
    assert sr == 8_000
    np.testing.assert_array_equal(decoded, audio.samples)
