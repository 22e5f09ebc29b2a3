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
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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


#: One recorded output's measured cost: its compute seconds and the seconds of audio it was made from.
Measured = tuple[float, float | None]


def cost_of(measured: Sequence[Measured]) -> FeatureCost | None:
    """A feature's cost from its recent outputs' measurements; ``None`` if it has none."""
    if not measured:
        return None
    seconds = sum(compute for compute, _ in measured)
    timed = [(compute, audio_s) for compute, audio_s in measured if audio_s]
    minutes = sum(audio_s for _, audio_s in timed) / 60
    return FeatureCost(len(measured), seconds / len(measured), sum(c for c, _ in timed) / minutes if minutes else None)


def past_costs(instance: DagsterInstance, features: Iterable[str], history: int = HISTORY) -> dict[str, FeatureCost]:
    """The measured cost of each of ``features`` with outputs in the event log (the others are left out)."""
    costs = {}
    for name in features:
        measured: list[Measured] = []
        for record in instance.fetch_materializations(AssetKey(name), limit=history).records:
            metadata = record.asset_materialization.metadata if record.asset_materialization else {}
            if "compute_s" in metadata:
                audio_s = float(metadata["audio_s"].value) if "audio_s" in metadata else None
                measured.append((float(metadata["compute_s"].value), audio_s))
        if cost := cost_of(measured):
            costs[name] = cost
    return costs


class _Reservoir:
    """A uniform sample of at most ``size`` items of a stream (Li's algorithm L: work per replacement, not per item)."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng, self.items, self.seen = size, rng, [], 0
        self._weight = math.exp(math.log(rng.random()) / size)
        self._next = size + self._skip()

    def _skip(self) -> int:
        return int(math.log(self.rng.random()) / math.log(1 - self._weight))

    def extend(self, items: Sequence[str]) -> None:
        free = min(len(items), self.size - len(self.items))
        self.items.extend(items[:free])
        end = self.seen + len(items)
        while self._next < end:
            self.items[self.rng.randrange(self.size)] = items[self._next - self.seen]
            self._weight *= math.exp(math.log(self.rng.random()) / self.size)
            self._next += self._skip() + 1
        self.seen = end


@dataclass
class WorkTally:
    """What a plan computes, counted page by page with flat memory: pairs per feature, a sample of their tracks.

    The sample (at most ``sample_size`` tracks per feature, a seeded uniform reservoir) is
    what the estimate reads durations of.
    """

    sample_size: int = DURATION_SAMPLE
    pairs: dict[str, int] = field(default_factory=dict)
    tracks: int = 0
    _reservoirs: dict[str, _Reservoir] = field(default_factory=dict, repr=False)
    _random: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def add(self, plan: Plan) -> WorkTally:
        """Count ``plan`` (pages must not share tracks)."""
        self.tracks += plan.tracks_with_work
        for feature, tracks in plan.compute.items():
            self.pairs[feature] = self.pairs.get(feature, 0) + len(tracks)
            if feature not in self._reservoirs:
                self._reservoirs[feature] = _Reservoir(self.sample_size, self._random)
            self._reservoirs[feature].extend(tracks)
        return self

    @property
    def samples(self) -> dict[str, list[str]]:
        return {feature: reservoir.items for feature, reservoir in self._reservoirs.items()}

    @property
    def features(self) -> list[str]:
        return list(self.pairs)


def estimate(
    work: WorkTally,
    costs: Mapping[str, FeatureCost],
    workers: int,
    *,
    audio_minutes: Callable[[list[str], int, float | None], float | None],
    windows: Mapping[str, float | None],
    beam: bool,
) -> dict[str, Any]:
    """``{"cpu_s", "wall_s", "workers", "per_feature", "unmeasured"}`` for ``work``.

    ``audio_minutes(sample, total, window_s)`` gives the audio minutes of
    ``total`` tracks from a ``sample`` of them, each counted at most
    ``window_s`` seconds (``None``: whole), or ``None`` if unknown;
    ``windows`` gives each feature's window (``FeatureGraph.window_s``).
    Features never measured are listed in ``unmeasured`` and count zero.
    """
    per_feature: dict[str, dict[str, Any]] = {}
    unmeasured = []
    for feature, pairs in work.pairs.items():
        cost = costs.get(feature)
        if cost is None:
            unmeasured.append(feature)
            continue
        minutes = audio_minutes(work.samples[feature], pairs, windows.get(feature)) if cost.s_per_audio_min is not None else None
        if minutes is not None:
            cpu, basis = cost.s_per_audio_min * minutes, "per audio minute"
        else:
            cpu, basis = cost.s_per_track * pairs, "per track"
        per_feature[feature] = {
            "pairs": pairs,
            "cpu_s": round(cpu, 2),
            "basis": basis,
            "s_per_track": round(cost.s_per_track, 4),
            "s_per_audio_min": None if cost.s_per_audio_min is None else round(cost.s_per_audio_min, 4),
            "measured_outputs": cost.samples,
        }
    cpu_s = sum(v["cpu_s"] for v in per_feature.values())
    n_tracks = work.tracks
    used = max(1, min(workers, n_tracks))
    wall_s = cpu_s / used + (BEAM_BATCH_OVERHEAD_S if beam and n_tracks else 0.0)
    return {
        "cpu_s": round(cpu_s, 1),
        "wall_s": round(wall_s, 1),
        "workers": used,
        "per_feature": per_feature,
        "unmeasured": sorted(unmeasured),
    }


def header_minutes(duration_of: Callable[[str], float | None]) -> Callable[[list[str], int, float | None], float | None]:
    """``audio_minutes`` from per-track header durations: the sample's mean, scaled up to the total."""
    known: dict[str, float | None] = {}

    def minutes(sample: list[str], total: int, window_s: float | None) -> float | None:
        for track in sample:
            if track not in known:
                known[track] = duration_of(track)
        durations = [known[t] for t in sample]
        if not durations or any(d is None for d in durations):
            return None
        clipped = [d if window_s is None else min(d, window_s) for d in durations]  # type: ignore[type-var]
        return sum(clipped) / len(clipped) * total / 60

    return minutes
