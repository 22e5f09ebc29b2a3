"""What a plan will cost, from what past runs measured.

Every recorded output carries ``compute_s`` (the seconds its function and
encoding took on a worker) and ``audio_s`` (the seconds of audio it was made
from). Per feature, the last materialisations give a rate per audio minute
and a mean per track; a plan's CPU seconds are the rate times the audio
minutes of the tracks to compute (read from their files' headers, where the
sources are local files) or else the mean per track. Wall-clock seconds
spread the CPU seconds over the workers the run will use, plus the start-up
of a Beam batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dagster import AssetKey, DagsterInstance

from klio_dagster.planning.planner import Plan

#: Past materialisations read per feature.
HISTORY = 200
#: Sources whose header is read for their duration; beyond it, the sample's mean stands for the rest.
DURATION_SAMPLE = 200
#: Start-up and shut-down of one local Beam batch, seconds (docs/benchmarks.md, B1 fixed costs).
BEAM_BATCH_OVERHEAD_S = 6.3


@dataclass(frozen=True)
class FeatureCost:
    """What one feature measured: over ``samples`` outputs, seconds per track and per audio minute."""

    samples: int
    s_per_track: float
    s_per_audio_min: float | None


def past_costs(instance: DagsterInstance, features: Iterable[str], history: int = HISTORY) -> dict[str, FeatureCost]:
    """The measured cost of each of ``features`` that has recorded outputs (the others are left out)."""
    costs = {}
    for name in features:
        records = instance.fetch_materializations(AssetKey(name), limit=history).records
        seconds, minutes, timed = 0.0, 0.0, 0.0
        samples = 0
        for record in records:
            metadata = record.asset_materialization.metadata if record.asset_materialization else {}
            if "compute_s" not in metadata:
                continue
            samples += 1
            compute = float(metadata["compute_s"].value)
            seconds += compute
            if "audio_s" in metadata and float(metadata["audio_s"].value) > 0:
                minutes += float(metadata["audio_s"].value) / 60
                timed += compute
        if samples:
            costs[name] = FeatureCost(samples, seconds / samples, timed / minutes if minutes else None)
    return costs


def estimate(
    work: Plan,
    costs: Mapping[str, FeatureCost],
    workers: int,
    *,
    audio_minutes: Callable[[list[str], float | None], float | None],
    windows: Mapping[str, float | None],
    beam: bool,
) -> dict[str, Any]:
    """``{"cpu_s", "wall_s", "workers", "per_feature", "unmeasured"}`` for ``work``.

    ``audio_minutes(tracks, window_s)`` gives the audio minutes of those
    tracks, each counted at most ``window_s`` seconds (``None``: whole), or
    ``None`` if unknown; ``windows`` gives each feature's window
    (``FeatureGraph.window_s``). Features never measured are listed in
    ``unmeasured`` and count zero.
    """
    tracks_of: dict[str, list[str]] = {}
    for feature, track in work.to_compute:
        tracks_of.setdefault(feature, []).append(track)
    per_feature: dict[str, dict[str, Any]] = {}
    unmeasured = []
    for feature, tracks in tracks_of.items():
        cost = costs.get(feature)
        if cost is None:
            unmeasured.append(feature)
            continue
        minutes = audio_minutes(tracks, windows.get(feature)) if cost.s_per_audio_min is not None else None
        if minutes is not None:
            cpu, basis = cost.s_per_audio_min * minutes, "per audio minute"
        else:
            cpu, basis = cost.s_per_track * len(tracks), "per track"
        per_feature[feature] = {
            "pairs": len(tracks),
            "cpu_s": round(cpu, 2),
            "basis": basis,
            "s_per_track": round(cost.s_per_track, 4),
            "s_per_audio_min": None if cost.s_per_audio_min is None else round(cost.s_per_audio_min, 4),
            "measured_outputs": cost.samples,
        }
    cpu_s = sum(v["cpu_s"] for v in per_feature.values())
    n_tracks = len({t for _, t in work.to_compute})
    used = max(1, min(workers, n_tracks))
    wall_s = cpu_s / used + (BEAM_BATCH_OVERHEAD_S if beam and n_tracks else 0.0)
    return {
        "cpu_s": round(cpu_s, 1),
        "wall_s": round(wall_s, 1),
        "workers": used,
        "per_feature": per_feature,
        "unmeasured": sorted(unmeasured),
    }


def header_minutes(
    duration_of: Callable[[str], float | None], sample: int = DURATION_SAMPLE
) -> Callable[[list[str], float | None], float | None]:
    """``audio_minutes`` from per-track header durations: a spread sample of at most ``sample`` tracks, scaled up."""
    known: dict[str, float | None] = {}

    def minutes(tracks: list[str], window_s: float | None) -> float | None:
        step = max(1, math.ceil(len(tracks) / sample))
        picked = tracks[::step]
        for track in picked:
            if track not in known:
                known[track] = duration_of(track)
        durations = [known[t] for t in picked]
        if not durations or any(d is None for d in durations):
            return None
        clipped = [d if window_s is None else min(d, window_s) for d in durations]  # type: ignore[type-var]
        return sum(clipped) / len(clipped) * len(tracks) / 60

    return minutes
