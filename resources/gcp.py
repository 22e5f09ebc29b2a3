"""Google Cloud: features on GCS, large batches on Dataflow.

Environment: ``KLIO_STORE=gs://bucket/prefix``, ``GCP_PROJECT``, ``KLIO_DATAFLOW_TEMP``
(``gs://...``), and optionally ``KLIO_DATAFLOW_REGION`` (default ``us-central1``),
``KLIO_DATAFLOW_STAGING``, ``KLIO_DATAFLOW_IMAGE`` (the workers' image:
``deploy/Dockerfile --target dataflow``), ``KLIO_DATAFLOW_SERVICE_ACCOUNT``,
``KLIO_DATAFLOW_NETWORK``, ``KLIO_DATAFLOW_SUBNETWORK``, ``KLIO_DATAFLOW_MACHINE_TYPE``,
``KLIO_DATAFLOW_MAX_WORKERS``, ``KLIO_DATAFLOW_EXPERIMENTS`` (comma-separated) and
``KLIO_DATAFLOW_PUBLIC_IPS=false``. A missing or malformed setting fails when the location
loads, saying which (:class:`~klio_dagster.executors.dataflow.DataflowOptions`).
"""

from __future__ import annotations

from typing import Any

from dagster import EnvVar

from klio_dagster import FeatureExecutorResource, FeatureStoreResource
from klio_dagster.executors.dataflow import DataflowOptions

from .local import local_resources

DEFAULT_REGION = "us-central1"


def gcp_resources() -> dict[str, Any]:
    dataflow = DataflowOptions.from_environment(default_region=DEFAULT_REGION)
    return {
        **local_resources(),
        "klio_store": FeatureStoreResource(uri=EnvVar("KLIO_STORE"), gcs_project=EnvVar("GCP_PROJECT")),
        "klio_executor": FeatureExecutorResource(mode="auto", runner="DataflowRunner", pipeline_args=dataflow.args()),
    }
