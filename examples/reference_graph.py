"""The reference feature graph.

    audio -> downsample -+-> beat_tracking -> energy
                         +-> speechiness
                         +-> instrumentalness
                         +-> spectrogram   (an image, shown in the UI)

Asset names are part of the contract: tests, docs and acceptance checks use them.

Two ephemeral features (computed in memory once per track, never stored)
hold what several features share: ``mel_power``, the mel power spectrogram
behind both onset envelopes and the spectrogram, and ``pulse_and_pauses``,
the two descriptors speechiness and instrumentalness are scored from.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from klio_dagster import Audio, FeatureGraph, FeatureOutput, feature
from klio_dagster.core.audio import beat_track, mel_spectrogram_db, rms_per_interval
from klio_dagster.core.audio import mel_power as mel_power_of
from klio_dagster.core.plots import mel_spectrogram_image

from . import descriptors

#: The rate ``downsample`` decodes at; its readers take the rate from the ``Audio`` they receive.
SAMPLE_RATE = 22_050

_unit = pa.Check.in_range(0.0, 1.0)

downsample_schema = pa.DataFrameSchema(
    {"value": pa.Column(np.float32, pa.Check(lambda s: np.isfinite(s).all(), error="samples must be finite"))},
    checks=pa.Check(lambda df: len(df) > 0, error="no samples"),
)
beats_schema = pa.DataFrameSchema(
    {
        "beat": pa.Column(int, pa.Check.ge(0)),
        "time_s": pa.Column(float, [pa.Check.ge(0.0), pa.Check(lambda s: s.is_monotonic_increasing)]),
        "tempo_bpm": pa.Column(float, pa.Check.ge(0.0)),
    },
    strict=True,
)
energy_schema = pa.DataFrameSchema(
    {
        "start_s": pa.Column(float, pa.Check.ge(0.0)),
        "end_s": pa.Column(float, pa.Check.ge(0.0)),
        "rms": pa.Column(float, pa.Check.ge(0.0)),
    },
    checks=pa.Check(lambda df: (df["end_s"] > df["start_s"]).all(), error="intervals must have positive length"),
    strict=True,
)
speechiness_schema = pa.DataFrameSchema(
    {c: pa.Column(float, _unit) for c in ("speechiness", "rhythmic_regularity", "pause_ratio")}, strict=True
)
instrumentalness_schema = pa.DataFrameSchema(
    {c: pa.Column(float, _unit) for c in ("instrumentalness", "rhythmic_regularity", "pause_ratio")}, strict=True
)
spectrogram_schema = pa.DataFrameSchema(
    # Whole-frame checks: one vectorised pass instead of 128 column validations per track.
    checks=[
        pa.Check(lambda df: df.shape[1] == 128, error="expected 128 mel bands"),
        pa.Check(lambda df: bool(((df.to_numpy() >= -80.0) & (df.to_numpy() <= 0.0)).all()), error="dB outside [-80, 0]"),
    ],
)


@feature(code_version="2", output="audio", sample_rate=SAMPLE_RATE, schema=downsample_schema)
def downsample(audio: Audio) -> FeatureOutput:
    """Mono audio resampled to 22,050 Hz with soxr (high quality), float32 in [-1, 1], stored as a float WAV."""
    return FeatureOutput(audio, {"samples": int(audio.samples.shape[-1])})


@feature(code_version="1", ephemeral=True)
def mel_power(downsample: Audio) -> np.ndarray:
    """Mel power spectrogram (128 bands, 2048-sample frames, hop 512), shape (128, frames): read by three features."""
    return mel_power_of(downsample.samples, downsample.sample_rate, hop_length=descriptors.HOP_LENGTH)


@feature(code_version="1", output="parquet", schema=beats_schema)
def beat_tracking(downsample: Audio, mel_power: np.ndarray) -> FeatureOutput:
    """Beat times (s) and the global tempo (BPM) from librosa's dynamic-programming beat tracker."""
    import librosa

    sr = downsample.sample_rate
    # librosa.beat.beat_track(y=y, ...)'s results, without its whole-track STFT and tempogram buffers.
    tempo, frames = beat_track(None, sr, S=mel_power, hop_length=descriptors.HOP_LENGTH)
    tempo_bpm = float(np.atleast_1d(tempo)[0])
    times = librosa.frames_to_time(frames, sr=sr, hop_length=descriptors.HOP_LENGTH)
    table = pd.DataFrame(
        {"beat": np.arange(len(times), dtype=int), "time_s": times.astype(float), "tempo_bpm": tempo_bpm}
    )
    return FeatureOutput(table, {"tempo_bpm": round(tempo_bpm, 2), "beats": len(times)})


@feature(code_version="1", output="parquet", schema=energy_schema)
def energy(downsample: Audio, beat_tracking: pd.DataFrame) -> FeatureOutput:
    """RMS energy of the signal in each beat interval (track start and end close the first and last)."""
    duration = downsample.duration_s
    inner = beat_tracking["time_s"].to_numpy()
    edges = np.unique(np.concatenate([[0.0], inner[(inner > 0) & (inner < duration)], [duration]]))
    rms = rms_per_interval(downsample.samples, downsample.sample_rate, edges)
    table = pd.DataFrame({"start_s": edges[:-1], "end_s": edges[1:], "rms": rms})
    return FeatureOutput(table, {"mean_rms": round(float(rms.mean()), 5), "max_rms": round(float(rms.max()), 5)})


@feature(code_version="1", ephemeral=True)
def pulse_and_pauses(downsample: Audio, mel_power: np.ndarray) -> dict[str, float]:
    """``rhythmic_regularity`` and ``pause_ratio`` (both in [0, 1]): what speechiness and instrumentalness score."""
    return {
        "rhythmic_regularity": descriptors.rhythmic_regularity(None, downsample.sample_rate, S=mel_power),
        "pause_ratio": descriptors.pause_ratio(downsample.samples),
    }


@feature(code_version="1", output="json", schema=speechiness_schema)
def speechiness(pulse_and_pauses: dict[str, float]) -> FeatureOutput:
    """How speech-like the track is, in [0, 1]: no steady pulse and speech-like pauses.

    ``0.6 * (1 - rhythmic_regularity) + 0.4 * speech_pause_score(pause_ratio)``;
    see docs/features.md for what it measures and its limits.
    """
    regularity, pauses = pulse_and_pauses["rhythmic_regularity"], pulse_and_pauses["pause_ratio"]
    score = 0.6 * (1.0 - regularity) + 0.4 * descriptors.speech_pause_score(pauses)
    result = {"speechiness": float(np.clip(score, 0.0, 1.0)), **pulse_and_pauses}
    return FeatureOutput(result, {"speechiness": round(result["speechiness"], 4)})


@feature(code_version="1", output="json", schema=instrumentalness_schema)
def instrumentalness(pulse_and_pauses: dict[str, float]) -> FeatureOutput:
    """How instrumental (pulsed or sustained, not spoken) the track is, in [0, 1].

    ``0.7 * rhythmic_regularity + 0.3 * (1 - speech_pause_score(pause_ratio))``;
    see docs/features.md for what it measures and its limits.
    """
    regularity, pauses = pulse_and_pauses["rhythmic_regularity"], pulse_and_pauses["pause_ratio"]
    score = 0.7 * regularity + 0.3 * (1.0 - descriptors.speech_pause_score(pauses))
    result = {"instrumentalness": float(np.clip(score, 0.0, 1.0)), **pulse_and_pauses}
    return FeatureOutput(result, {"instrumentalness": round(result["instrumentalness"], 4)})


@feature(code_version="1", output="png", schema=spectrogram_schema)
def spectrogram(downsample: Audio, mel_power: np.ndarray) -> FeatureOutput:
    """Mel spectrogram (128 bands, dB relative to the maximum), stored as a PNG image."""
    mel_db = mel_spectrogram_db(None, downsample.sample_rate, S=mel_power, hop_length=descriptors.HOP_LENGTH)
    return FeatureOutput(
        mel_db,
        {"mel_bands": int(mel_db.shape[0]), "frames": int(mel_db.shape[1])},
        preview=mel_spectrogram_image(mel_db, downsample.sample_rate, hop_length=descriptors.HOP_LENGTH),
    )


reference_graph = FeatureGraph(
    [downsample, mel_power, beat_tracking, energy, pulse_and_pauses, speechiness, instrumentalness, spectrogram]
)
