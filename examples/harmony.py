"""A second team's code location: musical key, computed from the reference graph's ``downsample``.

The harmony team owns this location and deploys it on its own; it reads
``downsample`` (owned by the reference location) as an *external* feature.
Its top-down sensor runs ``key`` for every track whose ``downsample`` a
top-down run has just materialised, batched, with no change to the
reference location. ``workspace.yaml`` loads it as ``harmony_team``.
"""

from __future__ import annotations

import numpy as np
import pandera.pandas as pa

from klio_dagster import Audio, FeatureGraph, FeatureOutput, build_feature_definitions, build_top_down_sensor, feature
from resources import profile_resources

from .reference_graph import downsample

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: Krumhansl-Kessler key profiles (probe-tone ratings), tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
KEYS = tuple(f"{p} {m}" for m in ("major", "minor") for p in PITCH_CLASSES)

key_schema = pa.DataFrameSchema(
    {
        "key": pa.Column(str, pa.Check.isin(KEYS)),
        "correlation": pa.Column(float, pa.Check.in_range(-1.0, 1.0)),
    },
    strict=True,
)


def estimate_key(y: np.ndarray, sr: int, *, hop_length: int = 2048) -> tuple[str, float]:
    """Musical key by the Krumhansl-Schmuckler method.

    Parameters
    ----------
    y : np.ndarray, shape=(n,)
        Mono audio samples.
    sr : int
        Sample rate of ``y``, in Hz.
    hop_length : int
        Chroma frame hop, in samples.

    Returns
    -------
    key : str
        One of the 24 major and minor keys, e.g. ``"A minor"``.
    correlation : float
        Pearson correlation, in [-1, 1], between the track's mean chroma and
        the winning key profile: a confidence, low for atonal or noisy audio.
    """
    import librosa

    if not np.any(y):
        return KEYS[0], 0.0  # silence has no key: the lowest confidence
    chroma = librosa.feature.chroma_stft(y=y, sr=sr, hop_length=hop_length).mean(axis=1)
    scores = [
        np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]
        for profile in (MAJOR_PROFILE, MINOR_PROFILE)
        for tonic in range(12)
    ]
    best = int(np.nanargmax(scores))
    return KEYS[best], float(np.clip(scores[best], -1.0, 1.0))


@feature(code_version="1", output="json", schema=key_schema)
def key(downsample: Audio) -> FeatureOutput:
    """Musical key (Krumhansl-Schmuckler on mean chroma) and its correlation, a confidence in [-1, 1]."""
    name, correlation = estimate_key(downsample.samples, downsample.sample_rate)
    return FeatureOutput({"key": name, "correlation": correlation}, {"key": name, "correlation": round(correlation, 4)})


harmony_graph = FeatureGraph([key], external=[downsample])
defs = build_feature_definitions(
    harmony_graph,
    name="harmony_features",
    group_name="harmony",
    sensors=[build_top_down_sensor],
    resources=profile_resources(),
    audio_source=False,  # the reference location owns `audio`
)
