"""The reference code location: the reference feature graph, its sensors and resources."""

from __future__ import annotations

from examples.reference_graph import reference_graph
from klio_dagster import build_feature_definitions
from resources import profile_resources
from sensors import ingestion_sensors

defs = build_feature_definitions(reference_graph, sensors=ingestion_sensors(), resources=profile_resources())
