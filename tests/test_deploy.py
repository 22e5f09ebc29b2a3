"""The production path on Kubernetes, as far as this machine allows (no cluster runs here).

dagster-k8s's real run launcher, configured as `klio-dagster k8s-values` configures the Helm chart,
builds the Kubernetes Job of a run and sends it through the real Kubernetes client to a loopback
stand-in of the API server (tests/kubernetes_api.py); the Job is validated against Kubernetes' own
schema (kubernetes-validate, strict) and its container's command is then run here, with the Job's
environment, against the same Postgres instance: the run it launches computes its track.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from klio_dagster.cli import main
from klio_dagster.deploy.k8s import K8sDeployment, RunPodSize, run_launcher_config
from klio_dagster.errors import ConfigurationError
from klio_dagster.orchestration.postgres import POSTGRES_URL_VARIABLE, STORAGE_CONFIG

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: The image the committed values name (deploy/helm/values.yaml is this command's output).
DOCUMENTED_IMAGE = "europe-docker.pkg.dev/PROJECT/klio/klio-dagster:0.1.0"
KUBERNETES_VERSION = "1.37"


@pytest.mark.unit
def test_a_run_pod_is_sized_from_the_measured_memory():
    size = RunPodSize(workers=4, max_track_s=3_600)
    assert size.worker_mb == 393 + 17 * 60  # docs/benchmarks.md, "Long tracks": 17 MB a minute + 393 MB
    assert size.memory_mi == 5_772  # (400 MB driver + 4 x 1,413 MB) in MiB
    assert size.container_resources() == {"requests": {"cpu": "4", "memory": "5772Mi"}, "limits": {"memory": "5772Mi"}}
    assert RunPodSize(workers=1, max_track_s=600).memory_mi < RunPodSize(workers=1, max_track_s=10_800).memory_mi
    for bad in ({"workers": 0}, {"max_track_s": 0}, {"max_track_s": -60}):
        with pytest.raises(ValueError):
            RunPodSize(**bad)


@pytest.mark.unit
def test_the_committed_helm_values_are_what_k8s_values_writes(capsys):
    assert main(["k8s-values", "--image", DOCUMENTED_IMAGE]) == 0
    assert capsys.readouterr().out == (REPO / "deploy" / "helm" / "values.yaml").read_text(), (
        f"regenerate: klio-dagster k8s-values --image {DOCUMENTED_IMAGE} > deploy/helm/values.yaml"
    )


@pytest.mark.unit
@pytest.mark.parametrize("args", [["--workers", "0"], ["--max-track-minutes", "-5"], ["--image", ""], ["--image", "a b:1"]])
def test_k8s_values_refuses_bad_input_and_says_why(capsys, args):
    assert main(["k8s-values", "--image", "registry/klio:1", *args]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.unit
def test_the_helm_values_run_pods_of_the_sized_resources_with_the_profile_and_workers_set():
    values = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    env = dict(e.split("=", 1) for e in launcher["envVars"])
    size = RunPodSize(workers=int(env["KLIO_BEAM_WORKERS"]), max_track_s=float(env["KLIO_MAX_TRACK_SECONDS"]))
    assert launcher["runK8sConfig"]["containerConfig"]["resources"] == size.container_resources()
    assert env["KLIO_PROFILE"] == "k8s"
    (code,) = values["dagster-user-deployments"]["deployments"]
    assert code["dagsterApiGrpcArgs"] == ["--module-name", "definitions", "--location-name", "klio_reference"]
    assert f'{code["image"]["repository"]}:{code["image"]["tag"]}' == DOCUMENTED_IMAGE
    assert values["postgresql"]["enabled"] is False and values["runLauncher"]["type"] == "K8sRunLauncher"


@pytest.mark.unit
def test_the_k8s_profile_runs_as_many_beam_workers_as_the_pod_has_cpus(monkeypatch):
    from resources import profile_resources

    monkeypatch.setenv("KLIO_STORE", "/tmp/klio-store")
    monkeypatch.setenv("KLIO_BEAM_WORKERS", "3")
    assert profile_resources("k8s")["klio_executor"].num_workers == 3
    for bad in ("", "0", "four"):
        monkeypatch.setenv("KLIO_BEAM_WORKERS", bad)
        with pytest.raises(ConfigurationError, match="KLIO_BEAM_WORKERS"):
            profile_resources("k8s")


@pytest.mark.unit
def test_the_image_pins_the_locked_beam_sdk_and_python():
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    lock = (REPO / "requirements.lock").read_text()
    beam = re.search(r"^apache-beam==(\S+)$", lock, re.M)[1]
    assert f"FROM apache/beam_python3.11_sdk:{beam} AS beam_sdk" in dockerfile
    assert "FROM python:3.11-slim AS base" in dockerfile and 'requires-python = ">=3.11,<3.12"' in (REPO / "pyproject.toml").read_text()
    assert "pip install --no-cache-dir -c requirements.lock ." in dockerfile
    assert re.search(r"^FROM base AS dagster$", dockerfile, re.M) and 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile


@pytest.mark.integration
def test_the_run_launcher_builds_a_valid_job_whose_command_runs_the_run(tmp_path, postgres_server, catalogue):
    from kubernetes_api import kubernetes_api

    track = catalogue[0]
    deployment = K8sDeployment(image="registry.local/klio-dagster:test", size=RunPodSize(workers=2, max_track_s=600))
    home, store = tmp_path / "home", tmp_path / "store"
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KLIO_", "DAGSTER_"))},
        "DAGSTER_HOME": str(home), POSTGRES_URL_VARIABLE: postgres_server.create_database("k8s"),
        "KLIO_STORE": str(store), "KLIO_QUEUE": str(tmp_path / "queue"), "KLIO_TIER": "native",
        "KLIO_ALLOWED_SOURCES": str(track.path.parent), **deployment.env(),
    }
    with kubernetes_api(tmp_path) as (kubeconfig, api):
        launcher = run_launcher_config(deployment, instance_config_map="dagster-instance", dagster_home=str(home))
        launcher["config"].update(load_incluster_config=False, kubeconfig_file=str(kubeconfig))  # the chart loads in-cluster config
        # Runs launch when submitted (the chart's daemon dequeues them; no daemon runs here).
        coordinator = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}
        instance = {"telemetry": {"enabled": False}, "run_coordinator": coordinator, "run_launcher": launcher}
        (home / "dagster.yaml").write_text(yaml.safe_dump(instance) + STORAGE_CONFIG)
        ingest = subprocess.run([BIN / "klio-dagster", "ingest", str(track.path), "--json"], env=env, cwd=REPO, capture_output=True, text=True)
        assert ingest.returncode == 0, ingest.stderr
        config = {"ops": {"klio_features": {"config": {"tracks": [track.track_id], "force_features": []}}}}
        launched = subprocess.run(
            [BIN / "dagster", "job", "launch", "-m", "definitions", "-j", "klio_features_job", "--config-json", json.dumps(config)],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
        )
        assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-3000:]
        (created,) = api.created
        job = created["job"]
        assert created["namespace"] == deployment.namespace
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)  # raises on any field Kubernetes would refuse

        pod = job["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        run_id = job["metadata"]["labels"]["dagster/run-id"]
        assert container["image"] == deployment.image and pod["serviceAccountName"] == deployment.service_account
        assert container["resources"] == deployment.size.container_resources()
        assert container["args"][:3] == ["dagster", "api", "execute_run"]
        job_env = {e["name"]: e.get("value") for e in container["env"]}
        assert {k: job_env[k] for k in deployment.env()} == deployment.env()
        assert {"secretRef": {"name": deployment.env_secret}} in container["envFrom"]
        assert job["metadata"]["labels"]["app.kubernetes.io/part-of"] == "klio-dagster"

        # The pod's command, run here with the Job's environment (and what its Secret would hold): the run runs.
        pod_env = {**env, **{k: v for k, v in job_env.items() if v is not None}, "PATH": f"{BIN}{os.pathsep}{env['PATH']}"}
        ran = subprocess.run(container["args"], env=pod_env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
        status = subprocess.run([BIN / "klio-dagster", "status", track.track_id, "--json"], env=env, cwd=REPO, capture_output=True, text=True)
        states = {row["feature"]: row["state"] for row in json.loads(status.stdout)}
        assert states["energy"] == "materialized" and states["spectrogram"] == "materialized", states

        # Terminating a run deletes its Job (a finished run's Job is left for its logs).
        second = subprocess.run(
            [BIN / "dagster", "job", "launch", "-m", "definitions", "-j", "klio_features_job", "--config-json", json.dumps(config)],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
        )
        assert second.returncode == 0, second.stderr[-3000:]
        second_run = api.created[-1]["job"]["metadata"]["labels"]["dagster/run-id"]
        assert second_run != run_id
        script = (
            "from dagster import DagsterInstance\n"
            f"with DagsterInstance.get() as instance: print(instance.run_coordinator.cancel_run({second_run!r}))"  # the UI's Terminate
        )
        terminated = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert terminated.returncode == 0 and terminated.stdout.strip() == "True", terminated.stderr[-3000:]
        assert api.deleted == [(deployment.namespace, api.created[-1]["job"]["metadata"]["name"])]
