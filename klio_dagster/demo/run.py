"""The demo: the whole product on a synthetic catalogue, with no cloud, checked end to end.

Generates the catalogue, publishes one top-down event per track to the
embedded local queue, evaluates the location's ingestion sensor exactly as
the daemon would, executes the runs it requests (batched), acknowledges the
messages, then reads every (feature, track) back from the event log. Any
pair that is not recorded is reported: the demo never passes a partial
result off as success.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import RunsFilter

from klio_dagster.core.execution import STANDARD_METADATA
from klio_dagster.core.features import AUDIO
from klio_dagster.demo.catalogue import DemoTrack, write_catalogue
from klio_dagster.errors import ConfigurationError, LocationError
from klio_dagster.events.local_queue import LocalQueue
from klio_dagster.events.messages import TrackEvent
from klio_dagster.orchestration.runs import IN_FLIGHT, execute_run
from klio_dagster.orchestration.ticks import evaluate_tick

if TYPE_CHECKING:
    from klio_dagster.cli.location import Location



@dataclass
class DemoResult:
    """Per track, each feature's headline (its first own metadata value) or its state; and what is missing."""

    features: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    missing: list[tuple[str, str, str]] = field(default_factory=list)  # (feature, track, state or error)
    in_flight_runs: list[str] = field(default_factory=list)

    def headers(self) -> list[str]:
        return ["track", "true_bpm", *self.features]

    def table(self) -> list[list[Any]]:
        return [[r.get(h) for h in self.headers()] for r in self.rows]

    def to_json(self) -> dict[str, Any]:
        return {
            "tracks": self.rows,
            "missing": [{"feature": f, "track": t, "state": s} for f, t, s in self.missing],
            "in_flight_runs": self.in_flight_runs,
        }

    def missing_report(self) -> str:
        lines = [f"error: {len(self.missing)} (feature, track) pairs the demo asked for are not recorded:"]
        lines += [f"  {f} / {t}: {s}" for f, t, s in self.missing[:20]]
        if len(self.missing) > 20:
            lines.append(f"  ... and {len(self.missing) - 20} more")
        if self.in_flight_runs:
            lines.append(
                f"runs still marked in progress hold these pairs: {', '.join(self.in_flight_runs)} "
                "(if their process died, mark them failed in the UI's Runs page, then run the demo again)"
            )
        return "\n".join(lines)


def _headline(metadata: dict[str, Any]) -> Any:
    own = [v for k, v in metadata.items() if k not in STANDARD_METADATA]
    return own[0] if own else "ok"


def run_demo(loc: Location, *, n_tracks: int = 12, duration_s: float = 180.0) -> DemoResult:
    sensor_name = loc.features.sensor_name("local_ingestion")
    if not any(s.name == sensor_name for s in loc.defs.sensors or ()):
        raise LocationError(
            f"the demo feeds the local queue, and this location has no {sensor_name!r} sensor "
            "(unset KLIO_PUBSUB_SUBSCRIPTION, or add build_local_queue_sensor to the location's sensors)"
        )
    folder = Path(os.environ["KLIO_DATA"]) / "media" / "demo"
    with loc.defs.resources["klio_sources"].process_config_and_initialize_cm() as sources:
        policy = sources.policy()
    if not any(Path(os.path.realpath(folder)).is_relative_to(root) for root in policy.allowed_roots):
        raise ConfigurationError(
            f"the demo publishes events for tracks in {folder}, which the allowed event sources "
            f"({', '.join(policy.allowed_roots) or 'none'}) do not include: add it to KLIO_ALLOWED_SOURCES"
        )
    catalogue = write_catalogue(folder, n_tracks, duration_s, overwrite=False)
    LocalQueue(os.environ["KLIO_QUEUE"]).publish_events([TrackEvent(t.track_id, uri=str(t.path)) for t in catalogue])

    result = evaluate_tick(loc.defs, sensor_name, loc.instance)  # registers the tracks, asks for batched runs
    for request in result.run_requests:
        execute_run(loc.job, loc.catalogue, request, origin=loc.origin)
    evaluate_tick(loc.defs, sensor_name, loc.instance, cursor=result.cursor)  # acknowledges the handled messages
    return summarise(loc, catalogue)


def summarise(loc: Location, catalogue: list[DemoTrack]) -> DemoResult:
    """Every (feature, track) of the top-down graph, read back from the event log."""
    features = loc.graph.descendants([AUDIO])
    result = DemoResult(features)
    for track in catalogue:
        row: dict[str, Any] = {"track": track.track_id, "true_bpm": track.tempo_bpm}
        for status in loc.catalogue.track_status(loc.graph, track.track_id):
            name = status["feature"]
            if name not in features:
                continue
            if status["state"] == "materialized":
                row[name] = _headline(status.get("metadata", {}))
            else:
                row[name] = status["state"].upper()
                result.missing.append((name, track.track_id, status.get("error") or status["state"]))
        result.rows.append(row)
    if result.missing:
        runs = loc.instance.get_runs(RunsFilter(statuses=IN_FLIGHT, job_name=loc.job.name))
        result.in_flight_runs = [r.run_id for r in runs]
    return result
