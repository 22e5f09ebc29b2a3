"""The layers hold: what Beam and Dataflow workers import runs without Dagster; the library never imports the deployment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
DAGSTER_FREE = [
    "klio_dagster",
    "klio_dagster.errors",
    "klio_dagster.core.features",
    "klio_dagster.core.graph",
    "klio_dagster.core.plots",
    "klio_dagster.testing",
    "klio_dagster.core.execution",
    "klio_dagster.core.formats",
    "klio_dagster.core.audio",
    "klio_dagster.core.tracks",
    "klio_dagster.storage.stores",
    "klio_dagster.storage.registry",
    "klio_dagster.planning.planner",
    "klio_dagster.ledger",
    "klio_dagster.deploy.k8s",
    "klio_dagster.executors.in_process",
    "klio_dagster.executors.beam",
]


@pytest.mark.parametrize("module", DAGSTER_FREE)
def test_module_imports_without_dagster(module):
    code = f"import sys, {module}; bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'dagster_gcp')); print(bad)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"{module} imported {done.stdout.strip()}"


def test_a_worker_unpickles_and_runs_a_track_without_dagster(tmp_path, catalogue):
    """What a Beam worker does: take a pickled task and the graph, compute, with Dagster never imported."""
    import cloudpickle

    from examples.reference_graph import reference_graph
    from klio_dagster import LocalFeatureStore, TrackTask
    from klio_dagster.storage.registry import record_sources

    store = LocalFeatureStore(tmp_path / "store")
    record_sources(store, {catalogue[0].track_id: str(catalogue[0].path)})
    payload = tmp_path / "task.pkl"
    payload.write_bytes(cloudpickle.dumps((TrackTask(catalogue[0].track_id, ("downsample", "speechiness")), reference_graph, store)))
    code = (
        "import pickle, sys; from klio_dagster.core.execution import compute_track; "
        f"task, graph, store = pickle.loads(open({str(payload)!r}, 'rb').read()); "
        "results = compute_track(task, graph, store); "
        "assert all(r.ok for r in results), results; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_library_never_imports_the_reference_deployment():
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "klio_dagster").rglob("*.py")
        for line in path.read_text().splitlines()
        if line.strip().startswith(("from examples", "import examples", "from definitions", "from resources", "from sensors"))
    ]
    assert offenders == []


LOAD_AND_COMPARE = """
import os, sys
before = dict(os.environ)
import definitions, examples.harmony
os.environ.pop("PYTHONPATH", None); before.pop("PYTHONPATH", None)
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print(changed)
"""


@pytest.mark.parametrize("profile", ["local", "gcp"])
def test_loading_a_code_location_writes_nothing_and_changes_no_environment(tmp_path, profile):
    repo = REPO
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLIO_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), KLIO_PROFILE=profile, PYTHONPATH=str(repo))
    if profile == "gcp":
        env.update(KLIO_STORE="gs://bucket/prefix", GCP_PROJECT="p", KLIO_DATAFLOW_TEMP="gs://bucket/tmp")
    done = subprocess.run([sys.executable, "-c", LOAD_AND_COMPARE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []  # no dagster.yaml, no data folder
