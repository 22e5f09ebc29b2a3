"""Turning a feature graph into Dagster assets and a batched job.

All features of a graph are one ``multi_asset`` (subsettable, partitioned by
``tracks``, backfills in batches of tracks): one run computes any subset of features
for any set of tracks in one step, which launches one executor batch (one
Beam pipeline). The step plans bottom-up, whatever launched it (the UI, the
CLI, a sensor): the missing or stale ancestors of the selection are computed
for its tracks in the same run. Every successful (feature, track) is recorded
as one materialisation of that partition, with the input data versions it was
made from; a failure is recorded as a failed attempt of that partition and an
``AssetObservation`` with ``klio/status = failed`` and its error, and the step
then fails so that the run, and each failed partition, show it.
"""


from collections.abc import Iterator
from typing import Any

import numpy as np
from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Config,
    Failure,
    MetadataValue,
    define_asset_job,
    in_process_executor,
    multi_asset,
)
from pydantic import Field

from klio_dagster.core.execution import PairResult, TrackTask
from klio_dagster.core.features import AUDIO, Feature
from klio_dagster.core.graph import FeatureGraph
from klio_dagster.core.tracks import validate_track_ids
from klio_dagster.errors import WorkerLost
from klio_dagster.events.outputs import FeatureDone, OutputEventsResource
from klio_dagster.orchestration.checks import SchemaTally, schema_check_specs
from klio_dagster.orchestration.claims import claims_before, leave_to_claimants
from klio_dagster.orchestration.compat import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    attach_feature_graph,
    report_failed_attempt,
)
from klio_dagster.orchestration.partitions import tracks_partitions
from klio_dagster.orchestration.previews import link_to, preview_markdown
from klio_dagster.orchestration.provenance import InputPointers, recorded_inputs
from klio_dagster.orchestration.resources import FeatureExecutorResource, FeatureStoreResource, TrackSourcesResource
from klio_dagster.orchestration.run_health import claim_run, clean_up_after_dead_runs, owner_tags
from klio_dagster.orchestration.tags import (
    FAILED,
    FEATURES_ASSET_NAME,
    FORMAT_METADATA,
    OWNER_TAG,
    SAMPLE_RATE_METADATA,
    STATUS_TAG,
)
from klio_dagster.planning.lineage import lineage_for
from klio_dagster.planning.planner import plan


class FeatureRunConfig(Config):
    """What one run computes. Empty ``tracks``: the run's partition key or range (UI runs)."""

    tracks: list[str] = Field(default_factory=list, description="Track IDs (any set, not only a range).")
    force_features: list[str] | None = Field(
        default=None,
        description="Features recomputed even if current; None: every selected feature (the UI's 'Materialize').",
    )


def audio_source_spec(group_name: str = "sources") -> AssetSpec:
    """The registered source file of every track (recorded by ``klio-dagster ingest``)."""
    return AssetSpec(
        AUDIO,
        partitions_def=tracks_partitions,
        group_name=group_name,
        description="Source audio file of each track, registered by ingestion (see `klio-dagster ingest`).",
        kinds={"audio"},
    )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _materialization(result: PairResult, feature: Feature, input_tags: dict[str, str]) -> AssetMaterialization:
    metadata: dict[str, Any] = {k: _plain(v) for k, v in result.metadata.items()}
    metadata["uri"] = MetadataValue.path(result.uri or "")
    if result.input_versions:  # also in Dagster's input tags; here for people reading the metadata
        metadata["input_data_versions"] = dict(result.input_versions)
    if "source_uri" in metadata:
        metadata["source_uri"] = MetadataValue.path(metadata["source_uri"])
    preview = preview_markdown(result.feature, result.track_id, result.preview_b64) if result.preview_b64 else None
    if preview:
        metadata["preview"] = MetadataValue.md(preview)
    if result.uri and feature.output_format.name == "png":
        metadata["full_resolution"] = link_to(result.uri)
    return AssetMaterialization(
        asset_key=result.feature,
        partition=result.track_id,
        description=preview,
        metadata=metadata,
        tags={
            DATA_VERSION_TAG: result.data_version or "",
            CODE_VERSION_TAG: feature.version,
            **input_tags,
        },
    )


def failure_observation(feature: str, track_id: str, error: str) -> AssetObservation:
    return AssetObservation(
        asset_key=feature,
        partition=track_id,
        metadata={STATUS_TAG: FAILED, "error": MetadataValue.text(error)},
        tags={STATUS_TAG: FAILED},
    )


def _run_tracks(context: AssetExecutionContext, config: FeatureRunConfig) -> list[str]:
    if config.tracks:
        return validate_track_ids(config.tracks)
    if context.has_partition_key or context.has_partition_key_range:
        return list(context.partition_keys)
    raise Failure("this run names no tracks: launch it for partitions, or set config.tracks")


def _done(result: PairResult, run_id: str) -> FeatureDone:
    return FeatureDone(
        result.feature,
        result.track_id,
        result.uri or "",
        result.data_version or "",
        str(result.metadata.get("code_version", "")),
        run_id,
    )


def compute_features(
    context: AssetExecutionContext,
    graph: FeatureGraph,
    config: FeatureRunConfig,
    store_resource: FeatureStoreResource,
    executor_resource: FeatureExecutorResource,
    outputs: OutputEventsResource,
    sources: TrackSourcesResource,
    output_chunk_tracks: int = 100,
) -> Iterator[AssetMaterialization | AssetObservation | AssetCheckResult | AssetCheckEvaluation]:
    """The body of the feature step: plan against lineage, execute, record, announce.

    Output events are published after their materialisations are recorded,
    every ``output_chunk_tracks`` tracks and at the end.
    """
    selected = graph.check_names(k.path[-1] for k in context.selected_asset_keys)
    tracks = _run_tracks(context, config)
    force = selected if config.force_features is None else config.force_features
    instance, store = context.instance, store_resource.get_store()
    if context.run.tags.get(OWNER_TAG) != owner_tags()[OWNER_TAG]:
        claim_run(instance, context.run_id)
    clean_up_after_dead_runs(instance, store)
    # Claims first, then lineage: a claimant that finishes in between has recorded its pairs by then.
    claimed = claims_before(instance, context.run_id)
    lineage = lineage_for(instance, graph, selected, tracks)
    work = plan(graph, lineage, selected, tracks, force=force, bottom_up=True)
    work, left = leave_to_claimants(work, graph, claimed)
    tasks = [TrackTask(t, fs, recorded_inputs(graph, lineage, t, fs)) for t, fs in work.features_by_track().items()]
    context.log.info(
        f"{len(work.to_compute)} (feature, track) pairs to compute for {len(tasks)} of {len(tracks)} tracks; "
        f"{len(work.skipped) - len(left)} already current"
    )
    if left:
        holders = sorted({claimed[p] for p in left if p in claimed})
        context.log.info(f"{len(left)} pairs left to earlier runs in progress that claim them: {', '.join(holders)}")
    if not tasks:
        return
    executor = executor_resource.executor_for(len(tasks))
    context.log.info(f"executing with {type(executor).__name__}")
    failed, examples, unannounced, announce_errors = 0, [], [], []

    def announce() -> None:
        try:
            outputs.publish(unannounced)
        except Exception as exc:  # noqa: BLE001 - reported when the step ends; the records stay
            announce_errors.append(f"{len(unannounced)} output events not published: {type(exc).__name__}: {exc}")
        unannounced.clear()

    def record_failure(feature: str, track: str, error: str) -> AssetObservation:
        report_failed_attempt(context, AssetKey(feature), track)
        return failure_observation(feature, track, error)

    pending = {t.track_id: t for t in tasks}
    pointers, checks = InputPointers(context, lineage), SchemaTally()
    no_result = "the executor returned no result for this track"
    try:
        for done, results in enumerate(executor.run(tasks, graph, store, sources.limits()), 1):
            if results:
                pending.pop(results[0].track_id, None)
            read_later = {p for r in results for p in r.input_versions}
            for result in results:
                checks.add(result)
                if result.ok:
                    feature = graph[result.feature]
                    yield _materialization(result, feature, pointers.tags_for(graph, feature, result.track_id, result.input_versions))
                    if result.feature in read_later:
                        pointers.recorded(result.feature, result.track_id)
                    if outputs.enabled:
                        unannounced.append(_done(result, context.run_id))
                else:
                    failed += 1
                    if len(examples) < 20:
                        examples.append(f"{result.feature} / {result.track_id}: {result.error}")
                    yield record_failure(result.feature, result.track_id, result.error or "")
            if done % 50 == 0:
                context.log.info(f"{done}/{len(tasks)} tracks done")
            if done % output_chunk_tracks == 0:
                announce()
    except WorkerLost as exc:
        no_result = f"{type(exc).__name__}: {exc}"
        examples.append(no_result)
    announce()
    for task in pending.values():
        for feature in task.features:
            failed += 1
            yield record_failure(feature, task.track_id, no_result)
    partitioned = context.has_partition_key or context.has_partition_key_range
    yield from checks.results(results_for=set(context.selected_asset_check_keys) if partitioned else set())
    problems = []
    if failed:
        problems.append(f"{failed} (feature, track) pairs failed; the others were recorded.\n" + "\n".join(examples))
    if announce_errors:
        problems.append("results were recorded, but output events could not be published:\n" + "\n".join(announce_errors[:5]))
    if problems:
        raise Failure(description="\n".join(problems), metadata={"failed_pairs": failed})


def build_feature_assets(
    graph: FeatureGraph,
    *,
    name: str = FEATURES_ASSET_NAME,
    group_name: str = "features",
    backfill_batch_size: int = 1_000,
) -> AssetsDefinition:
    """One subsettable, track-partitioned ``multi_asset`` computing every feature of ``graph``.

    A backfill launched from the UI is split into runs of at most
    ``backfill_batch_size`` tracks: each is one batch (one Beam pipeline),
    and a live event's run waits for at most one of them (see ``priority``).
    """
    specs = [
        AssetSpec(
            f.asset_key,
            deps=[AssetKey(u) for u in graph.upstream(f.name)] + [AssetKey.from_coercible(d) for d in f.deps],
            partitions_def=tracks_partitions,
            code_version=f.version,
            description=f.description,
            group_name=group_name,
            skippable=True,
            metadata={FORMAT_METADATA: f.output_format.name, **({SAMPLE_RATE_METADATA: f.sample_rate} if f.sample_rate else {})},
            kinds={"python", f.output_format.name},
        )
        for f in graph
    ]

    @multi_asset(
        name=name,
        specs=specs,
        check_specs=schema_check_specs(graph),
        can_subset=True,
        partitions_def=tracks_partitions,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=backfill_batch_size),
    )
    def _features(
        context: AssetExecutionContext,
        config: FeatureRunConfig,
        klio_store: FeatureStoreResource,
        klio_executor: FeatureExecutorResource,
        klio_output: OutputEventsResource,
        klio_sources: TrackSourcesResource,
    ):
        yield from compute_features(context, graph, config, klio_store, klio_executor, klio_output, klio_sources)

    return attach_feature_graph(_features, graph)


def build_features_job(assets: AssetsDefinition, name: str | None = None):
    """The job the CLI and sensors launch: the feature step, in the run's own process.

    Its name defaults to ``"{asset name}_job"``.
    """
    return define_asset_job(name or job_name_for(assets), selection=[assets], executor_def=in_process_executor)


def job_name_for(assets: AssetsDefinition) -> str:
    return f"{assets.node_def.name}_job"
