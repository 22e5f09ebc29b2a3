"""Descriptors behind the reference graph's speechiness and instrumentalness.

Both scores are deterministic heuristics in [0, 1] built from two frame
statistics of a mono signal (docs/features.md gives the formulas and their
limits). They are not trained models: they separate speech (no steady pulse,
frequent short pauses) from pulsed or sustained music, and say little about
mixtures such as rap over a beat or singing without a pulse.
"""

from __future__ import annotations

import numpy as np

from klio_dagster.core.audio import frame_rms, onset_strength

#: Analysis frames: 2048 samples, hop 512 (about 93 ms / 23 ms at 22,050 Hz).
N_FFT = 2048
HOP_LENGTH = 512


def pause_ratio(y: np.ndarray, *, threshold: float = 0.1) -> float:
    """Fraction of frames quieter than ``threshold`` times the loud level, in [0, 1].

    Parameters
    ----------
    y : np.ndarray, shape=(n,)
        Mono samples.
    threshold : float
        Relative level (linear amplitude) below which a frame counts as a pause.
        The loud level is the 90th-percentile frame RMS.
    """

    rms = frame_rms(y, frame_length=N_FFT, hop_length=HOP_LENGTH)[0]
    loud = np.percentile(rms, 90)
    if loud <= 0:
        return 1.0
    return float(np.mean(rms < threshold * loud))


def speech_pause_score(ratio: float) -> float:
    """How typical a pause ratio is of speech, in [0, 1].

    Conversational speech pauses in roughly 10-50 % of frames: the score is 1
    there, rises linearly from 0 at no pauses, and falls linearly to 0 at 90 %
    (a mostly silent track, such as a sparse click track).
    """
    if ratio < 0.1:
        return ratio / 0.1
    if ratio <= 0.5:
        return 1.0
    return max(0.0, (0.9 - ratio) / 0.4)


def rhythmic_regularity(y: np.ndarray | None, sr: int, *, S: np.ndarray | None = None) -> float:
    """Peak normalised autocorrelation of the onset strength at beat-like lags, in [0, 1].

    Parameters
    ----------
    y : np.ndarray, shape=(n,), or None
        Mono samples; not read when ``S`` is given.
    sr : int
        Sample rate in Hz.
    S : np.ndarray, shape=(128, frames), optional
        The track's mel power spectrogram (``mel_power(y, sr, hop_length=HOP_LENGTH)``), if already computed.

    Notes
    -----
    Lags from 0.25 s to 2 s (30 to 240 BPM). A metronome or a drum pattern
    repeats exactly (close to 1); speech has no steady pulse (close to 0).
    """
    import librosa

    onset = onset_strength(y, sr, S=S, hop_length=HOP_LENGTH)
    onset = onset - onset.mean()
    ac = librosa.autocorrelate(onset)
    if ac[0] <= 0:
        return 0.0
    frame_rate = sr / HOP_LENGTH
    lo, hi = int(0.25 * frame_rate), min(len(ac) - 1, int(2.0 * frame_rate))
    if hi <= lo:
        return 0.0
    return float(np.clip(ac[lo : hi + 1].max() / ac[0], 0.0, 1.0))
