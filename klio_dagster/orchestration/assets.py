"""Turning a feature graph into Dagster assets and a batched job.

All features of a graph are one ``multi_asset`` (subsettable, partitioned by
its tier's partitions: tracks or track shards, backfills in batches): one run computes any subset of features
for any set of tracks in one step, which launches one executor batch (one
Beam pipeline). The step plans bottom-up, whatever launched it (the UI, the
CLI, a sensor): the missing or stale ancestors of the selection are computed
for its tracks in the same run. The tier records every (feature, track)
outcome (:mod:`klio_dagster.tiers`); a run with failed pairs fails its step,
so that the run, and each failed partition, show it.
"""


from collections.abc import Iterator
from contextlib import closing
from typing import TYPE_CHECKING

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
    define_asset_job,
    in_process_executor,
    multi_asset,
)
from pydantic import Field

from klio_dagster.core.execution import PairResult, TrackTask
from klio_dagster.core.features import AUDIO
from klio_dagster.core.graph import FeatureGraph
from klio_dagster.core.tracks import validate_track_ids
from klio_dagster.errors import WorkerLost
from klio_dagster.events.outputs import FeatureDone, OutputEventsResource
from klio_dagster.orchestration.checks import SchemaTally, schema_check_specs
from klio_dagster.orchestration.claims import claims_before, leave_to_claimants
from klio_dagster.orchestration.compat import attach_feature_graph
from klio_dagster.orchestration.provenance import recorded_inputs
from klio_dagster.orchestration.resources import FeatureExecutorResource, FeatureStoreResource, TrackSourcesResource
from klio_dagster.orchestration.run_health import claim_run, clean_up_after_dead_runs, owner_tags
from klio_dagster.orchestration.tags import FEATURES_ASSET_NAME, FORMAT_METADATA, OWNER_TAG, SAMPLE_RATE_METADATA
from klio_dagster.planning.lineage import lineage_for
from klio_dagster.planning.planner import plan
from klio_dagster.tiers import Catalogue, Tier, tier_from_environment

if TYPE_CHECKING:
    from klio_dagster.executors.beam import SubmittedJob


class FeatureRunConfig(Config):
    """What one run computes. Empty ``tracks``: the run's partition key or range (UI runs)."""

    tracks: list[str] = Field(default_factory=list, description="Track IDs (any set, not only a range).")
    force_features: list[str] | None = Field(
        default=None,
        description="Features recomputed even if current; None: every selected feature (the UI's 'Materialize').",
    )


def audio_source_spec(group_name: str = "sources", tier: Tier | None = None) -> AssetSpec:
    """The registered source file of every track (recorded by ``klio-dagster ingest``)."""
    return AssetSpec(
        AUDIO,
        partitions_def=(tier or tier_from_environment()).partitions_def,
        group_name=group_name,
        description="Source audio file of each track, registered by ingestion (see `klio-dagster ingest`).",
        kinds={"audio"},
    )


def _run_tracks(context: AssetExecutionContext, config: FeatureRunConfig, catalogue: Catalogue) -> list[str]:
    if config.tracks:
        return validate_track_ids(config.tracks)
    if context.has_partition_key or context.has_partition_key_range:
        return catalogue.tracks_of_partitions(list(context.partition_keys))
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
    tier: Tier,
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
    instance, store = context.instance, store_resource.get_store()
    catalogue = tier.open(instance, store)
    selected = graph.check_names(k.path[-1] for k in context.selected_asset_keys)
    tracks = _run_tracks(context, config, catalogue)
    force = selected if config.force_features is None else config.force_features
    if context.run.tags.get(OWNER_TAG) != owner_tags()[OWNER_TAG]:
        claim_run(instance, context.run_id)
    clean_up_after_dead_runs(instance, store)
    # Claims first, then lineage: a claimant that finishes in between has recorded its pairs by then.
    claimed = claims_before(catalogue, context.run_id)
    lineage = lineage_for(catalogue, graph, selected, tracks, pointers=True)
    work = plan(graph, lineage, selected, tracks, force=force, bottom_up=True)
    work, left = leave_to_claimants(work, graph, claimed)
    by_track = work.features_by_track()
    known_sources = catalogue.task_sources(list(by_track)) or {}
    tasks = [TrackTask(t, fs, recorded_inputs(graph, lineage, t, fs), known_sources.get(t)) for t, fs in by_track.items()]
    context.log.info(
        f"{len(work.to_compute)} (feature, track) pairs to compute for {len(tasks)} of {len(tracks)} tracks; "
        f"{len(work.skipped) - len(left)} already current"
    )
    if left:
        holders = sorted({claimed[p] for p in left if p in claimed})
        context.log.info(f"{len(left)} pairs left to earlier runs in progress that claim them: {', '.join(holders)}")
    if not tasks:
        return

    def submitted(job: "SubmittedJob") -> None:  # the run's page names the remote job, and the run's end cancels it
        instance.add_run_tags(context.run_id, job.tags())
        context.log.info(job.describe())

    executor = executor_resource.executor_for(len(tasks), run_id=context.run_id, on_submitted=submitted)
    context.log.info(f"executing with {type(executor).__name__}")
    failed, examples, unannounced, announce_errors = 0, [], [], []

    recorder = catalogue.recorder(context, graph, lineage)

    def announce() -> None:
        recorder.flush()  # announced outputs are recorded first
        try:
            outputs.publish(unannounced)
        except Exception as exc:  # noqa: BLE001 - reported when the step ends; the records stay
            announce_errors.append(f"{len(unannounced)} output events not published: {type(exc).__name__}: {exc}")
        unannounced.clear()

    pending = {t.track_id: t for t in tasks}
    checks = SchemaTally()
    no_result = "the executor returned no result for this track"
    try:
        # Closed however the step ends (a terminated run raises here): the executor stops its workers or cancels its job.
        with closing(executor.run(tasks, graph, store, sources.limits())) as batches:
            for done, results in enumerate(batches, 1):
                if results:
                    pending.pop(results[0].track_id, None)
                read_later = {p for r in results for p in r.input_versions}
                for result in results:
                    checks.add(result)
                    if result.ok:
                        yield from recorder.success(result, graph[result.feature], result.feature in read_later)
                        if outputs.enabled:
                            unannounced.append(_done(result, context.run_id))
                    else:
                        failed += 1
                        if len(examples) < 20:
                            examples.append(f"{result.feature} / {result.track_id}: {result.error}")
                        yield from recorder.failure(result.feature, result.track_id, result.error or "")
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
            yield from recorder.failure(feature, task.track_id, no_result)
    yield from recorder.finish()
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
    tier: Tier | None = None,
    name: str = FEATURES_ASSET_NAME,
    group_name: str = "features",
    backfill_batch_size: int = 1_000,
) -> AssetsDefinition:
    """One subsettable, track-partitioned ``multi_asset`` computing every feature of ``graph``.

    A backfill launched from the UI is split into runs of at most
    ``backfill_batch_size`` tracks: each is one batch (one Beam pipeline),
    and a live event's run waits for at most one of them (see ``priority``).
    ``tier`` (default: :func:`~klio_dagster.tiers.tier_from_environment`) partitions the assets
    and keeps the per-track state.
    """
    tier = tier or tier_from_environment()
    specs = [
        AssetSpec(
            f.asset_key,
            deps=[AssetKey(u) for u in graph.upstream(f.name)] + [AssetKey.from_coercible(d) for d in f.deps],
            partitions_def=tier.partitions_def,
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
        check_specs=[*schema_check_specs(graph), *tier.check_specs(graph)],
        can_subset=True,
        partitions_def=tier.partitions_def,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=tier.partitions_per_run(backfill_batch_size)),
    )
    def _features(
        context: AssetExecutionContext,
        config: FeatureRunConfig,
        klio_store: FeatureStoreResource,
        klio_executor: FeatureExecutorResource,
        klio_output: OutputEventsResource,
        klio_sources: TrackSourcesResource,
    ):
        yield from compute_features(context, graph, tier, config, klio_store, klio_executor, klio_output, klio_sources)

    return attach_feature_graph(_features, graph, tier)


def build_features_job(assets: AssetsDefinition, name: str | None = None):
    """The job the CLI and sensors launch: the feature step, in the run's own process.

    Its name defaults to ``"{asset name}_job"``.
    """
    return define_asset_job(name or job_name_for(assets), selection=[assets], executor_def=in_process_executor)


def job_name_for(assets: AssetsDefinition) -> str:
    return f"{assets.node_def.name}_job"
