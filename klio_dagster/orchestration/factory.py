"""One ``Definitions`` factory for any feature graph, and the view of a location the CLI uses.

``build_feature_definitions`` derives everything from one graph and one name:
the multi-asset (``name``), its job (``"{name}_job"``) and every sensor (each
factory in ``sensors`` is called with the :class:`FeatureLocation`, so it
launches that job with run config under that asset's name). A second team's
location is a few lines and cannot get the names wrong.

:func:`find_feature_location` finds the feature graph, its asset and its job
in any ``Definitions`` by introspection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import AssetsDefinition, AssetSpec, Definitions, JobDefinition, SensorDefinition, in_process_executor

from klio_dagster.core.graph import FeatureGraph
from klio_dagster.errors import LocationError
from klio_dagster.events.local_sensor import LocalQueueResource
from klio_dagster.events.outputs import OutputEventsResource
from klio_dagster.orchestration.assets import audio_source_spec, build_feature_assets, build_features_job, job_name_for
from klio_dagster.orchestration.compat import feature_graph_of, tier_of
from klio_dagster.orchestration.resources import FeatureExecutorResource, FeatureStoreResource, TrackSourcesResource
from klio_dagster.orchestration.tags import FEATURES_ASSET_NAME
from klio_dagster.tiers import Tier, tier_from_environment


@dataclass(frozen=True)
class FeatureLocation:
    """A feature graph with the multi-asset that computes it; its job is ``"{asset name}_job"``."""

    graph: FeatureGraph
    assets: AssetsDefinition

    @property
    def name(self) -> str:
        """The multi-asset's name: its op's key in run config, and the prefix of the job and sensors."""
        return self.assets.node_def.name

    @property
    def job_name(self) -> str:
        return job_name_for(self.assets)

    @property
    def tier(self) -> Tier:
        """Where this location's tracks and per-track state live."""
        return tier_of(self.assets)

    def sensor_name(self, kind: str) -> str:
        return f"{self.name}_{kind}"

    def run_config(self, tracks: Sequence[str], force_features: Sequence[str]) -> dict[str, Any]:
        """Run config computing ``tracks`` (any set), forcing ``force_features``."""
        return {"ops": {self.name: {"config": {"tracks": list(tracks), "force_features": list(force_features)}}}}


#: Builds one sensor of a location (``build_local_queue_sensor``, ``build_pubsub_sensor``,
#: ``build_top_down_sensor``, or a ``functools.partial`` of one with its options).
SensorFactory = Callable[[FeatureLocation], SensorDefinition]


def default_resources() -> dict[str, Any]:
    """The embedded resources: a local store and queue (``KLIO_STORE``/``KLIO_QUEUE`` when used, else
    ``./data``), the executor choosing in-process or local Beam by batch size, no output events, and
    event sources allowed under ``KLIO_ALLOWED_SOURCES`` (else ``./data/media``)."""
    return {
        "klio_store": FeatureStoreResource(),
        "klio_executor": FeatureExecutorResource(),
        "klio_output": OutputEventsResource(),
        "klio_queue": LocalQueueResource(),
        "klio_sources": TrackSourcesResource(),
    }


def build_feature_location(
    graph: FeatureGraph,
    *,
    tier: Tier | None = None,
    name: str = FEATURES_ASSET_NAME,
    group_name: str = "features",
    backfill_batch_size: int = 1_000,
) -> FeatureLocation:
    """The multi-asset and job of ``graph``, named ``name`` and ``"{name}_job"``."""
    assets = build_feature_assets(graph, tier=tier, name=name, group_name=group_name, backfill_batch_size=backfill_batch_size)
    return FeatureLocation(graph, assets)


def build_feature_definitions(
    graph: FeatureGraph,
    *,
    tier: Tier | None = None,
    name: str = FEATURES_ASSET_NAME,
    group_name: str = "features",
    sensors: Iterable[SensorFactory] = (),
    resources: Mapping[str, Any] | None = None,
    assets: Sequence[AssetsDefinition | AssetSpec] = (),
    audio_source: bool = True,
    backfill_batch_size: int = 1_000,
) -> Definitions:
    """A complete code location for ``graph``.

    Parameters
    ----------
    graph : FeatureGraph
        The features this location computes (and the other locations' features it reads).
    tier : Tier, optional
        Where tracks and per-track state live: :class:`~klio_dagster.tiers.NativeTier` (every track a
        partition) or :class:`~klio_dagster.tiers.LedgerTier` (track shards and a ledger); default
        :func:`~klio_dagster.tiers.tier_from_environment` (``KLIO_TIER``). Every location of one
        instance must use the same tier.
    name : str
        Name of the features multi-asset; the job is ``"{name}_job"`` and the sensors
        ``"{name}_local_ingestion"``, ``"{name}_pubsub_ingestion"``, ``"{name}_top_down"``.
    sensors : iterable of SensorFactory
        Each is called with this location's :class:`FeatureLocation`.
    resources : mapping, optional
        Override or add to the embedded defaults (:func:`default_resources`); the Pub/Sub
        sensor needs ``klio_pubsub``.
    assets : sequence
        Plain Dagster assets beside the features (upstream or downstream of them).
    audio_source : bool
        Include the ``audio`` source asset (leave it to the location that owns it).
    """
    tier = tier or tier_from_environment()
    location = build_feature_location(graph, tier=tier, name=name, group_name=group_name, backfill_batch_size=backfill_batch_size)
    return Definitions(
        assets=[*([audio_source_spec(tier=tier)] if audio_source else []), location.assets, *assets],
        jobs=[build_features_job(location.assets)],
        sensors=[make(location) for make in sensors],
        resources={**default_resources(), **(resources or {})},
        # UI runs and backfill batches too: the feature step launches its own Beam pipeline.
        executor=in_process_executor,
    )


def find_feature_location(defs: Definitions) -> tuple[FeatureLocation, JobDefinition, Definitions]:
    """The one feature graph of ``defs``, its resolved job, and ``defs`` (holding that job).

    A ``Definitions`` built by hand without the job gets it added (``"{asset name}_job"``).
    Raises :class:`LocationError` if ``defs`` has no feature graph, or several.
    """
    found = [(a, g) for a in defs.assets or () if isinstance(a, AssetsDefinition) and (g := feature_graph_of(a))]
    if not found:
        raise LocationError(
            "the code location defines no feature graph: build its Definitions with "
            "klio_dagster.build_feature_definitions(graph, ...) (or add build_feature_assets(graph) to its assets)"
        )
    if len(found) > 1:
        names = ", ".join(a.node_def.name for a, _ in found)
        raise LocationError(f"the code location defines several feature graphs ({names}): give each its own location")
    location = FeatureLocation(found[0][1], found[0][0])
    if not any(getattr(j, "name", None) == location.job_name for j in defs.jobs or ()):
        defs = Definitions.merge(defs, Definitions(jobs=[build_features_job(location.assets)]))
    return location, defs.resolve_job_def(location.job_name), defs
