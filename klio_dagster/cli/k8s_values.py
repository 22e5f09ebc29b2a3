"""``klio-dagster k8s-values``: values for Dagster's Helm chart, run pods sized from measured memory.

``helm upgrade --install dagster dagster/dagster -n dagster -f values.yaml`` then deploys the
webserver, the daemon and this code location, with every run a Kubernetes Job of its own
(docs/deploy.md).
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from klio_dagster.cli.output import EXIT_OK
from klio_dagster.deploy.k8s import K8sDeployment, RunPodSize, helm_values
from klio_dagster.errors import InvalidRequest


def deployment_of(args: argparse.Namespace) -> K8sDeployment:
    """The deployment the arguments describe, or :class:`InvalidRequest` saying which is wrong."""
    try:
        size = RunPodSize(workers=args.workers, max_track_s=args.max_track_minutes * 60)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if not args.image or any(c.isspace() for c in args.image):
        raise InvalidRequest(f"--image {args.image!r}: name the image built from deploy/Dockerfile, as REPOSITORY:TAG")
    return K8sDeployment(
        image=args.image, size=size, namespace=args.namespace, postgres_host=args.postgres_host,
        env_secret=args.env_secret, max_concurrent_runs=args.max_concurrent_runs,
    )


def run(args: argparse.Namespace) -> int:
    deployment = deployment_of(args)
    values = helm_values(deployment)
    header = (
        f"# Dagster Helm chart values (klio-dagster k8s-values): run pods of {deployment.size.workers} Beam workers for tracks of up to "
        f"{args.max_track_minutes:g} min, {deployment.size.memory_mi} Mi each (measured: docs/benchmarks.md)\n"
    )
    sys.stdout.write(json.dumps(values) + "\n" if args.json else header + yaml.safe_dump(values, sort_keys=False))
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("k8s-values", parents=[common], help="values for Dagster's Helm chart: run pods sized for their Beam workers")
    p.add_argument("--image", required=True, help="the code location's image (deploy/Dockerfile), REPOSITORY:TAG")
    p.add_argument("--workers", type=int, default=4, help="Beam workers (CPUs) per run pod (default 4)")
    p.add_argument("--max-track-minutes", type=float, default=60.0, help="the longest track a run admits (default 60)")
    p.add_argument("--namespace", default="dagster")
    p.add_argument("--postgres-host", default="postgres", help="the external Postgres server's host")
    p.add_argument("--env-secret", default="klio-env", help="the Secret holding KLIO_STORE, KLIO_POSTGRES_URL, ...")
    p.add_argument("--max-concurrent-runs", type=int, default=8)
    p.set_defaults(handler=run)
