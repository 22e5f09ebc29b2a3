"""Deployment profiles: the resources of the reference code location.

``KLIO_PROFILE`` picks one: ``local`` (the embedded default: a local
store and queue, Beam's local runner), ``gcp`` (a GCS store, Dataflow for
large batches) or ``k8s`` (Dagster on Kubernetes: each run a pod whose Beam
workers match its CPUs). Secrets and locations come from environment variables
through ``EnvVar``, never from code.
"""

from __future__ import annotations

import os
from typing import Any

from klio_dagster import ConfigurationError

from .gcp import gcp_resources
from .k8s import k8s_resources
from .local import local_resources

PROFILES = {"local": local_resources, "gcp": gcp_resources, "k8s": k8s_resources}


def profile_resources(profile: str | None = None) -> dict[str, Any]:
    name = profile or os.environ.get("KLIO_PROFILE", "local")
    try:
        return PROFILES[name]()
    except KeyError:
        raise ConfigurationError(f"unknown KLIO_PROFILE {name!r}: choose one of {sorted(PROFILES)}") from None
