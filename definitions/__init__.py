"""The reference code location: the reference feature graph, its sensors and resources."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from examples.reference_graph import reference_graph
from klio_dagster import audio_source_spec, build_feature_assets, build_features_job
from resources import profile_resources
from sensors import deployment_sensors

feature_graph = reference_graph
features = build_feature_assets(feature_graph)
features_job = build_features_job([features])

defs = Definitions(
    assets=[audio_source_spec(), features],
    jobs=[features_job],
    sensors=deployment_sensors(feature_graph, features_job),
    resources=profile_resources(),
    # UI runs and backfill batches too: the feature step launches its own Beam pipeline.
    executor=in_process_executor,
)
