"""Klio's example job ``audio_spectrograms``, ported to klio-dagster.

Klio's job (spotify/klio, ``examples/audio_spectrograms``) loads 5 s of each
track from an offset of 10 s, takes the STFT's magnitude, filters it with
its nearest neighbours, splits it with two soft masks into background and
foreground, and plots the three spectrograms. Here each step is a feature:

    audio -> stft (magnitude, phase: ephemeral) -> nn_filter (ephemeral)
          -> soft_masks (background, foreground: stored, npy)
          -> spectrogram_plots (full_plot, background_plot, foreground_plot: png)

Only what a person looks at or another job reads is stored; the 5 s
magnitude and its filter stay in memory (a full track's magnitude is about
32 MB). The numbers are librosa's, bit for bit: tests/test_audio_spectrograms.py
computes Klio's transforms beside this port and compares them.
``KLIO_DEFINITIONS=examples.audio_spectrograms`` runs it from the CLI.
"""

from __future__ import annotations

import numpy as np

from klio_dagster import (
    Audio,
    FeatureGraph,
    FeatureOut,
    FeatureOutput,
    build_feature_definitions,
    feature,
    figure_image,
    multi_feature,
    spectrogram_figure,
)

#: librosa.load's default rate, which Klio's ``LoadAudio`` used.
SAMPLE_RATE = 22_050
HOP_LENGTH = 512


@multi_feature(
    outs={"magnitude": FeatureOut(ephemeral=True), "phase": FeatureOut(ephemeral=True)},
    code_version="1",
    sample_rate=SAMPLE_RATE,
    offset_s=10.0,
    duration_s=5.0,
    params={"n_fft": 2048, "hop_length": HOP_LENGTH},
    libraries=["librosa"],
)
def stft(audio: Audio, n_fft: int, hop_length: int) -> dict[str, np.ndarray]:
    """Magnitude and phase of the STFT of 5 s of the track from 10 s (Klio's ``GetSTFT`` and ``GetMagnitude``)."""
    import librosa

    magnitude, phase = librosa.magphase(librosa.stft(y=audio.samples, n_fft=n_fft, hop_length=hop_length))
    return {"magnitude": magnitude, "phase": phase}


@feature(
    code_version="1",
    ephemeral=True,
    params={"width_s": 2.0, "sample_rate": SAMPLE_RATE, "hop_length": HOP_LENGTH},
    libraries=["librosa"],
)
def nn_filter(magnitude: np.ndarray, width_s: float, sample_rate: int, hop_length: int) -> np.ndarray:
    """The magnitude filtered by its nearest neighbours (cosine, median), capped by the magnitude (``FilterNearestNeighbors``)."""
    import librosa

    width = int(librosa.time_to_frames(width_s, sr=sample_rate, hop_length=hop_length))
    filtered = librosa.decompose.nn_filter(magnitude, aggregate=np.median, metric="cosine", width=width)
    return np.minimum(magnitude, filtered)


@multi_feature(
    outs={
        "background": FeatureOut(output="npy", description="Magnitude under the background soft mask."),
        "foreground": FeatureOut(output="npy", description="Magnitude under the foreground soft mask."),
    },
    code_version="1",
    params={"margin_background": 2, "margin_foreground": 10, "power": 2},
    libraries=["librosa"],
)
def soft_masks(
    magnitude: np.ndarray, nn_filter: np.ndarray, margin_background: float, margin_foreground: float, power: float
) -> dict[str, np.ndarray]:
    """Background and foreground by soft masks (Klio's two ``GetSoftMask`` steps, margins 2 and 10)."""
    import librosa

    net = magnitude - nn_filter
    return {
        "background": librosa.util.softmask(nn_filter, margin_background * net, power=power) * magnitude,
        "foreground": librosa.util.softmask(net, margin_foreground * nn_filter, power=power) * magnitude,
    }


@multi_feature(
    outs={
        name: FeatureOut(output="png", path=f"spectrograms/{{track}}-{part}.{{ext}}")
        for name, part in (("full_plot", "full"), ("background_plot", "background"), ("foreground_plot", "foreground"))
    },
    code_version="1",
    params={"sample_rate": SAMPLE_RATE, "hop_length": HOP_LENGTH},
)
def spectrogram_plots(
    track_id: str, magnitude: np.ndarray, background: np.ndarray, foreground: np.ndarray, sample_rate: int, hop_length: int
) -> dict:
    """The three spectrograms in dB, log-frequency (Klio's ``GetSpec`` and ``SpecToPlot(y_axis="log")``).

    Stored where Klio's job wrote them, ``spectrograms/{track}-full.png`` and so on, and shown with
    each materialisation in the Dagster UI.
    """
    import librosa

    def plot(S: np.ndarray, what: str) -> FeatureOutput:
        S_db = librosa.amplitude_to_db(S, ref=np.max)
        fig = spectrogram_figure(S_db, sr=sample_rate, hop_length=hop_length, y_axis="log", title=f"{what} Spectrogram for {track_id}")
        return FeatureOutput(fig, preview=figure_image(fig))  # the PNG stored, a WebP copy shown in the Dagster UI

    return {
        "full_plot": plot(magnitude, "Full"),
        "background_plot": plot(background, "Background"),
        "foreground_plot": plot(foreground, "Foreground"),
    }


audio_spectrograms_graph = FeatureGraph([stft, nn_filter, soft_masks, spectrogram_plots])

#: A batch job, as Klio's was (its events came from a file of IDs: ``--tracks-file``); no sensor.
defs = build_feature_definitions(audio_spectrograms_graph, name="audio_spectrograms")
