"""Dagster on Kubernetes: a run pod sized from measured memory, the run launcher and the Helm chart's values.

A run pod holds the Dagster run worker (the driver: planning, recording; 335 MB peak measured at
1,000 tracks a batch, "Memory" in docs/benchmarks.md) and the local Beam runner's workers, one per
CPU the pod requests. A worker holds one track at a time: 17 MB per minute of audio + 393 MB
("Long tracks" in docs/benchmarks.md), so the pod's memory follows from the longest track it
admits (``KLIO_MAX_TRACK_SECONDS``, which fails longer tracks before decoding them) and its workers.

:func:`run_launcher_config` is what dagster-k8s's ``K8sRunLauncher`` takes in ``dagster.yaml``;
:func:`helm_values` the same deployment as values of Dagster's official Helm chart
(``dagster/dagster``), which writes that ``dagster.yaml`` itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: The run worker's own peak (335 MB measured at 1,000 tracks), with headroom for the gRPC client and logs.
DRIVER_MB = 400
#: One Beam worker's peak: a fixed part (imports, buffers) and a part per minute of the track it holds.
WORKER_BASE_MB = 393
WORKER_MB_PER_AUDIO_MINUTE = 17
#: Environment every klio-dagster container reads (see resources/k8s.py).
PROFILE_ENV = "KLIO_PROFILE"


@dataclass(frozen=True)
class RunPodSize:
    """The resources of one run pod: ``workers`` Beam workers, tracks of at most ``max_track_s`` seconds.

    Memory is requested and limited alike (a pod over its request is the first evicted); CPU is
    requested, not limited (a limit throttles librosa's bursts; the workers never exceed it for long).
    """

    workers: int = 4
    max_track_s: float = 3_600.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"a run pod needs at least one worker, not {self.workers}")
        if self.max_track_s <= 0:
            raise ValueError(f"max_track_s must be positive, not {self.max_track_s}")

    @property
    def worker_mb(self) -> int:
        """One worker's peak memory (MB) for the longest track admitted."""
        return math.ceil(WORKER_BASE_MB + WORKER_MB_PER_AUDIO_MINUTE * self.max_track_s / 60)

    @property
    def memory_mi(self) -> int:
        """The pod's memory in MiB (Kubernetes ``Mi``), from the MB measured."""
        return math.ceil((DRIVER_MB + self.workers * self.worker_mb) * 1e6 / 2**20)

    def container_resources(self) -> dict[str, dict[str, str]]:
        """The run container's ``resources``."""
        memory = f"{self.memory_mi}Mi"
        return {"requests": {"cpu": str(self.workers), "memory": memory}, "limits": {"memory": memory}}

    def env(self) -> dict[str, str]:
        """What the run's executor reads: as many workers as CPUs requested (a pod's ``os.cpu_count()`` is the node's)."""
        return {"KLIO_BEAM_WORKERS": str(self.workers), "KLIO_MAX_TRACK_SECONDS": str(int(self.max_track_s))}


@dataclass(frozen=True)
class K8sDeployment:
    """What a klio-dagster deployment on Kubernetes is made of."""

    image: str
    size: RunPodSize = RunPodSize()
    namespace: str = "dagster"
    service_account: str = "dagster"
    #: A Secret with every variable the code needs and must not be in values (KLIO_POSTGRES_URL, KLIO_STORE, ...).
    env_secret: str = "klio-env"
    location_name: str = "klio_reference"
    module: str = "definitions"
    postgres_host: str = "postgres"
    postgres_database: str = "dagster"
    postgres_user: str = "dagster"
    max_concurrent_runs: int = 8

    @property
    def image_repository(self) -> str:
        return self.image.rpartition(":")[0] if ":" in self.image.rpartition("/")[2] else self.image

    @property
    def image_tag(self) -> str:
        return self.image.rpartition(":")[2] if ":" in self.image.rpartition("/")[2] else "latest"

    def env(self) -> dict[str, str]:
        return {PROFILE_ENV: "k8s", **self.size.env()}


def run_launcher_config(deployment: K8sDeployment, *, instance_config_map: str, dagster_home: str = "/opt/dagster/dagster_home") -> dict[str, Any]:
    """``dagster.yaml``'s ``run_launcher`` entry: dagster-k8s's ``K8sRunLauncher`` with the sized run pod."""
    return {
        "module": "dagster_k8s",
        "class": "K8sRunLauncher",
        "config": {
            "job_namespace": deployment.namespace,
            "service_account_name": deployment.service_account,
            "instance_config_map": instance_config_map,
            "dagster_home": dagster_home,
            "job_image": deployment.image,
            "image_pull_policy": "IfNotPresent",
            "env_secrets": [deployment.env_secret],
            "env_vars": [f"{k}={v}" for k, v in deployment.env().items()],
            "run_k8s_config": {"container_config": {"resources": deployment.size.container_resources()}},
            "labels": {"app.kubernetes.io/part-of": "klio-dagster"},
            "fail_pod_on_run_failure": True,
        },
    }


def helm_values(deployment: K8sDeployment) -> dict[str, Any]:
    """Values of Dagster's Helm chart for this deployment: one user code deployment, runs as sized pods, external Postgres."""
    env = [{"name": k, "value": v} for k, v in deployment.env().items()]
    return {
        "global": {"serviceAccountName": deployment.service_account},
        "dagster-user-deployments": {
            "enabled": True,
            "deployments": [
                {
                    "name": deployment.location_name.replace("_", "-"),
                    "image": {"repository": deployment.image_repository, "tag": deployment.image_tag, "pullPolicy": "IfNotPresent"},
                    "dagsterApiGrpcArgs": ["--module-name", deployment.module, "--location-name", deployment.location_name],
                    "port": 3030,
                    "env": env,
                    "envSecrets": [{"name": deployment.env_secret}],
                    # The code server loads the location and answers the UI; it computes nothing.
                    "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
                }
            ],
        },
        "runLauncher": {
            "type": "K8sRunLauncher",
            "config": {
                "k8sRunLauncher": {
                    "jobNamespace": deployment.namespace,
                    "loadInclusterConfig": True,
                    "envSecrets": [{"name": deployment.env_secret}],
                    "envVars": [f"{k}={v}" for k, v in deployment.env().items()],
                    "runK8sConfig": {"containerConfig": {"resources": deployment.size.container_resources()}},
                    "labels": {"app.kubernetes.io/part-of": "klio-dagster"},
                    "failPodOnRunFailure": True,
                }
            },
        },
        "postgresql": {
            "enabled": False,
            "postgresqlHost": deployment.postgres_host,
            "postgresqlUsername": deployment.postgres_user,
            "postgresqlDatabase": deployment.postgres_database,
            "service": {"port": 5432},
        },
        # The password lives in a Secret named `dagster-postgresql-secret` (key `postgresql-password`), made beforehand.
        "generatePostgresqlPasswordSecret": False,
        "dagsterDaemon": {
            "runCoordinator": {
                "enabled": True,
                "type": "QueuedRunCoordinator",
                "config": {"queuedRunCoordinator": {"maxConcurrentRuns": deployment.max_concurrent_runs}},
            },
        },
    }
