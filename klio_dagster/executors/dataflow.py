"""Dataflow: the pipeline options of a production batch, checked before any job is built.

The same pipeline as the local runner's (:mod:`klio_dagster.executors.beam`); only its options
differ. Each option is one Dataflow asks for (``--project``, ``--region``, ``--temp_location``,
``--sdk_container_image``: the image ``deploy/Dockerfile --target dataflow`` builds, ...); a job
carries the Dagster run's ID as a label, so the Dataflow console and billing export name the run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from klio_dagster.errors import ConfigurationError

#: Dataflow's rule for job names, and the labels' (lowercase letters, digits, ``-`` and ``_``, at most 63).
_JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL = re.compile(r"^[a-z][-_a-z0-9]{0,62}$")
_LABEL_VALUE = re.compile(r"^[-_a-z0-9]{0,63}$")


@dataclass(frozen=True)
class DataflowOptions:
    """Where and how a batch runs on Dataflow.

    Parameters
    ----------
    project, region : str
        The Google Cloud project and the Dataflow region (``europe-west1``, ...).
    temp_location, staging_location : str
        ``gs://`` folders for temporary files and the staged job (``staging_location``
        defaults to Dataflow's: under ``temp_location``).
    sdk_container_image : str
        The workers' image: this package and its pinned dependencies (``deploy/Dockerfile``).
    service_account_email, network, subnetwork, machine_type : str
        Optional worker settings (empty: Dataflow's defaults).
    max_num_workers : int
        The autoscaling ceiling (0: Dataflow's default).
    experiments : tuple of str
        Dataflow experiments (``use_runner_v2`` is Beam's default for Python).
    use_public_ips : bool
        ``False`` keeps workers on private addresses (the subnetwork needs Private Google Access).
    """

    project: str
    region: str
    temp_location: str
    staging_location: str = ""
    sdk_container_image: str = ""
    service_account_email: str = ""
    network: str = ""
    subnetwork: str = ""
    machine_type: str = ""
    max_num_workers: int = 0
    experiments: tuple[str, ...] = field(default_factory=tuple)
    use_public_ips: bool = True

    def __post_init__(self) -> None:
        missing = [name for name in ("project", "region", "temp_location") if not getattr(self, name)]
        if missing:
            raise ConfigurationError(f"Dataflow needs {', '.join(missing)} (KLIO_DATAFLOW_* and GCP_PROJECT: resources/gcp.py)")
        for name in ("temp_location", "staging_location"):
            value = getattr(self, name)
            if value and not value.startswith("gs://"):
                raise ConfigurationError(f"Dataflow {name} {value!r}: use a gs://bucket/folder its workers can reach")
        if self.max_num_workers < 0:
            raise ConfigurationError(f"Dataflow max_num_workers {self.max_num_workers}: use 0 (Dataflow's default) or more")

    @classmethod
    def from_environment(cls, default_region: str = "") -> DataflowOptions:
        """From ``GCP_PROJECT`` and ``KLIO_DATAFLOW_*`` (see resources/gcp.py)."""
        env = os.environ.get
        return cls(
            project=env("GCP_PROJECT", ""),
            region=env("KLIO_DATAFLOW_REGION", "") or default_region,
            temp_location=env("KLIO_DATAFLOW_TEMP", ""),
            staging_location=env("KLIO_DATAFLOW_STAGING", ""),
            sdk_container_image=env("KLIO_DATAFLOW_IMAGE", ""),
            service_account_email=env("KLIO_DATAFLOW_SERVICE_ACCOUNT", ""),
            network=env("KLIO_DATAFLOW_NETWORK", ""),
            subnetwork=env("KLIO_DATAFLOW_SUBNETWORK", ""),
            machine_type=env("KLIO_DATAFLOW_MACHINE_TYPE", ""),
            max_num_workers=int(env("KLIO_DATAFLOW_MAX_WORKERS", "0") or 0),
            experiments=tuple(e for e in env("KLIO_DATAFLOW_EXPERIMENTS", "").split(",") if e),
            use_public_ips=env("KLIO_DATAFLOW_PUBLIC_IPS", "true").lower() not in ("false", "0", "no"),
        )

    def args(self) -> list[str]:
        """Beam's pipeline arguments for these options (the job name and labels are the batch's: :func:`job_args`)."""
        args = [f"--project={self.project}", f"--region={self.region}", f"--temp_location={self.temp_location}"]
        optional = {
            "staging_location": self.staging_location,
            "sdk_container_image": self.sdk_container_image,
            "service_account_email": self.service_account_email,
            "network": self.network,
            "subnetwork": self.subnetwork,
            "machine_type": self.machine_type,
            "max_num_workers": self.max_num_workers or "",
        }
        args += [f"--{name}={value}" for name, value in optional.items() if value]
        args += [f"--experiments={e}" for e in self.experiments]
        if not self.use_public_ips:
            args.append("--no_use_public_ips")
        return args


def job_args(job_name: str, labels: Mapping[str, str]) -> list[str]:
    """``--job_name`` and ``--labels`` of one batch, checked against Dataflow's rules (a refused job fails late)."""
    if not _JOB_NAME.match(job_name):
        raise ConfigurationError(f"Dataflow job name {job_name!r}: lowercase letters, digits and '-', starting with a letter")
    args = [f"--job_name={job_name}"]
    for key, value in labels.items():
        value = value.lower()
        if not _LABEL.match(key) or not _LABEL_VALUE.match(value):
            raise ConfigurationError(f"Dataflow label {key}={value}: lowercase letters, digits, '-' and '_', at most 63 each")
        args.append(f"--labels={key}={value}")
    return args


def console_url(project: str, region: str, job_id: str) -> str:
    """The Dataflow console's page of a job (the address Beam logs when it waits for one)."""
    return f"https://console.cloud.google.com/dataflow/jobs/{region}/{job_id}?project={project}"
