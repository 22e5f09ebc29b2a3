"""A synthetic demo catalogue: click tracks, music-like and speech-like signals.

Every signal is generated from a seed, so the catalogue is the same on every
machine, and its ground truth (tempo, kind) is known for tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 44_100
#: (format, subtype, extension) cycled through the catalogue.
ENCODINGS = (("WAV", "PCM_16", "wav"), ("FLAC", "PCM_16", "flac"), ("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3"))


@dataclass(frozen=True)
class DemoTrack:
    track_id: str
    kind: str  # "click", "music" or "speech"
    tempo_bpm: float | None
    path: Path


def click_track(bpm: float, duration_s: float, sr: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Short 1.5 kHz blips with an accent every fourth beat, at ``bpm`` beats per minute."""
    rng = np.random.default_rng(seed)
    y = 0.002 * rng.standard_normal(int(duration_s * sr))
    t = np.arange(int(0.03 * sr)) / sr
    blip = np.sin(2 * np.pi * 1500 * t) * np.exp(-t * 120)
    for i, start in enumerate(np.arange(0.1, duration_s - 0.05, 60.0 / bpm)):
        s = int(start * sr)
        gain = 0.9 if i % 4 == 0 else 0.5
        y[s : s + len(blip)] += gain * blip[: len(y) - s]
    return y.astype(np.float32)


def music_like(bpm: float, duration_s: float, sr: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Sustained chords changing every bar over a kick drum on each beat."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * sr)
    t = np.arange(n) / sr
    beat = 60.0 / bpm
    roots = rng.choice([110.0, 123.5, 130.8, 146.8, 164.8, 174.6, 196.0], size=int(duration_s / (4 * beat)) + 1)
    bar = np.minimum((t / (4 * beat)).astype(int), len(roots) - 1)
    y = np.zeros(n)
    for interval in (1.0, 1.26, 1.5):  # a major triad
        y += 0.12 * _tone_bank(roots[bar] * interval, t)
    kick_t = np.arange(int(0.12 * sr)) / sr
    kick = np.sin(2 * np.pi * (60 + 90 * np.exp(-kick_t * 30)) * kick_t) * np.exp(-kick_t * 25)
    for start in np.arange(0.05, duration_s - 0.15, beat):
        s = int(start * sr)
        y[s : s + len(kick)] += 0.6 * kick
    return (0.8 * y / np.max(np.abs(y))).astype(np.float32)


def _tone_bank(freqs: np.ndarray, t: np.ndarray, harmonics: int = 5) -> np.ndarray:
    """Harmonic tones following the per-sample frequencies ``freqs`` (Hz) over times ``t`` (s)."""
    phase = 2 * np.pi * np.cumsum(freqs) * (t[1] - t[0])
    return sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))


def speech_like(duration_s: float, sr: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Voiced syllables (a glottal pulse train through vowel formants) at ~4.5 Hz, with pauses."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    vowels = ((730, 1090), (270, 2290), (300, 870), (530, 1840), (660, 1720))
    out = np.zeros(int(duration_s * sr))
    pos = int(0.2 * sr)
    f0_base = rng.uniform(100, 210)
    while pos < len(out):
        for _ in range(rng.integers(3, 9)):  # a word group of syllables
            length = int(rng.uniform(0.14, 0.28) * sr)
            if pos + length >= len(out):
                break
            t = np.arange(length) / sr
            f0 = f0_base * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
            source = (np.diff(np.floor(np.cumsum(f0) / sr), prepend=0) > 0).astype(float)
            syllable = np.zeros(length)
            for formant, bw in zip(vowels[rng.integers(len(vowels))], (80, 120)):
                r = np.exp(-np.pi * bw / sr)
                theta = 2 * np.pi * formant / sr
                syllable += lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], source)
            consonant = rng.standard_normal(int(0.03 * sr)) * 0.3
            syllable[: len(consonant)] += consonant
            out[pos : pos + length] = syllable * np.hanning(length)
            pos += length + int(rng.uniform(0.01, 0.06) * sr)
        pos += int(rng.uniform(0.25, 0.6) * sr)  # a pause between phrases
    return (0.7 * out / np.max(np.abs(out))).astype(np.float32)


def write_catalogue(
    folder: str | Path, n_tracks: int = 12, duration_s: float = 20.0, prefix: str = "demo", *, overwrite: bool = True
) -> list[DemoTrack]:
    """Write ``n_tracks`` files (kinds and encodings interleaved) into ``folder``.

    With ``overwrite=False`` files already present are kept as they are.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tempi = (72.0, 90.0, 100.0, 120.0, 128.0, 140.0, 150.0, 110.0)
    tracks = []
    for i in range(n_tracks):
        kind = ("click", "music", "speech")[i % 3]
        tempo = tempi[i % len(tempi)] if kind != "speech" else None
        fmt, subtype, ext = ENCODINGS[i % len(ENCODINGS)]
        path = folder / f"{prefix}-{i:03d}-{kind}.{ext}"
        tracks.append(DemoTrack(path.stem, kind, tempo, path))
        if path.exists() and not overwrite:
            continue
        if kind == "click":
            y = click_track(tempo, duration_s, seed=i)
        elif kind == "music":
            y = music_like(tempo, duration_s, seed=i)
        else:
            y = speech_like(duration_s, seed=i)
        if i % 2:  # every other file in stereo
            y = np.stack([y, 0.9 * y], axis=1)
        write_audio(path, y, SAMPLE_RATE, fmt, subtype)
    return tracks


def write_audio(path: Path, y: np.ndarray, sr: int, fmt: str, subtype: str) -> None:
    """Encode ``y`` (frames first) in one-second blocks, then rename into place.

    libsndfile 1.2's Vorbis encoder crashes the process on one very large
    write (seen with 3-minute files); block writes encode the same file. The
    temporary name means an interrupted write never leaves a partial file.
    """
    channels = 1 if y.ndim == 1 else y.shape[1]
    tmp = path.with_name(f".{path.name}.tmp")
    with sf.SoundFile(tmp, "w", sr, channels, format=fmt, subtype=subtype) as out:
        for start in range(0, len(y), sr):
            out.write(y[start : start + sr])
    tmp.replace(path)
