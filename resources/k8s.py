"""Dagster on Kubernetes: every run a pod sized for its Beam workers (see klio_dagster/deploy/k8s.py).

Environment (set by the Helm values that ``klio-dagster k8s-values`` writes, and a Secret):
``KLIO_STORE`` (``gs://bucket/prefix``, or a volume's path), ``GCP_PROJECT`` for a GCS store,
``KLIO_BEAM_WORKERS`` (the pod's CPUs: inside a pod ``os.cpu_count()`` counts the node's) and
``KLIO_MAX_TRACK_SECONDS`` (what the pod's memory was sized for).
"""

from __future__ import annotations

import os
from typing import Any

from dagster import EnvVar

from klio_dagster import ConfigurationError, FeatureExecutorResource, FeatureStoreResource

from .local import local_resources


def beam_workers() -> int:
    """``KLIO_BEAM_WORKERS``: the local Beam runner's workers in this pod."""
    value = os.environ.get("KLIO_BEAM_WORKERS", "")
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(
            f"KLIO_BEAM_WORKERS={value!r}: the k8s profile needs the run pod's CPU count (a positive integer), "
            "as `klio-dagster k8s-values` sets it"
        )
    return int(value)


def k8s_resources() -> dict[str, Any]:
    project = EnvVar("GCP_PROJECT") if os.environ.get("GCP_PROJECT") else None
    return {
        **local_resources(),
        "klio_store": FeatureStoreResource(uri=EnvVar("KLIO_STORE"), gcs_project=project),
        "klio_executor": FeatureExecutorResource(mode="auto", num_workers=beam_workers()),
    }
