"""Google Cloud: features on GCS, large batches on Dataflow.

Environment: ``KLIO_STORE=gs://bucket/prefix``, ``GCP_PROJECT``,
``KLIO_DATAFLOW_REGION``, ``KLIO_DATAFLOW_TEMP`` (``gs://...``) and
optionally ``KLIO_DATAFLOW_IMAGE`` (an SDK container with this package).
"""

from __future__ import annotations

import os
from typing import Any

from dagster import EnvVar

from klio_dagster import FeatureExecutorResource, FeatureStoreResource

from .local import local_resources


def dataflow_args() -> list[str]:
    args = [
        f"--project={os.environ.get('GCP_PROJECT', '')}",
        f"--region={os.environ.get('KLIO_DATAFLOW_REGION', 'us-central1')}",
        f"--temp_location={os.environ.get('KLIO_DATAFLOW_TEMP', '')}",
    ]
    if image := os.environ.get("KLIO_DATAFLOW_IMAGE"):
        args.append(f"--sdk_container_image={image}")
    return args


def gcp_resources() -> dict[str, Any]:
    return {
        **local_resources(),
        "klio_store": FeatureStoreResource(uri=EnvVar("KLIO_STORE"), gcs_project=EnvVar("GCP_PROJECT")),
        "klio_executor": FeatureExecutorResource(mode="auto", runner="DataflowRunner", pipeline_args=dataflow_args()),
    }
