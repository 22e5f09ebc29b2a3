"""The complete example of docs/features.md, exactly as printed there, used as a new team would.

Its graph has its own asset name (``my_features``). It is loaded by the CLI as
a module from its own folder and as a path from elsewhere, with no
``PYTHONPATH``; its local-queue sensor is evaluated as the daemon would; and
``dagster dev -f`` serves it with the sensor running.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance
from runs import catalogue_of

from klio_dagster import find_feature_location
from klio_dagster.cli.location import load_definitions
from klio_dagster.events.local_queue import LocalQueue
from klio_dagster.events.messages import TrackEvent
from klio_dagster.orchestration.runs import execute_run
from klio_dagster.orchestration.ticks import evaluate_tick

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("klio-dagster"))


def docs_example() -> str:
    text = (REPO / "docs" / "features.md").read_text()
    (code,) = re.findall(r"```python\n(# my_features\.py\n.*?)```", text, flags=re.S)
    return code


@pytest.fixture
def example(tmp_path) -> Path:
    folder = tmp_path / "team"
    folder.mkdir()
    path = folder / "my_features.py"
    path.write_text(docs_example())
    return path


def klio(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, object, str]:
    done = subprocess.run([CLI, *args, "--json"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith(("{", "["))]
    return done.returncode, json.loads(lines[-1]) if lines else None, done.stderr


def clean_env(klio_env: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KLIO_DEFINITIONS")}
    return {**env, **extra}


def test_the_example_runs_through_the_cli_as_a_module_and_as_a_path(example, klio_env, catalogue):
    env = clean_env(klio_env, KLIO_DEFINITIONS="my_features")
    tracks = [str(t.path) for t in catalogue[:2]]
    code, out, err = klio("ingest", *tracks, cwd=example.parent, env=env)
    assert code == 0, err
    code, out, err = klio("materialize", "onsets", "--all-tracks", cwd=example.parent, env=env)
    assert code == 0, err
    ids = [t.track_id for t in catalogue[:2]]
    assert sorted(map(tuple, out["computed"])) == sorted((f, t) for f in ("mono16k", "onsets") for t in ids)
    assert out["failed"] == []

    by_path = clean_env(klio_env, KLIO_DEFINITIONS=str(example))
    code, out, err = klio("materialize", "onsets", "--all-tracks", "--force", cwd=klio_env, env=by_path)
    assert code == 0, err
    assert sorted(f for f, _ in out["computed"]) == ["onsets", "onsets"]
    code, rows, err = klio("status", catalogue[0].track_id, cwd=klio_env, env=by_path)
    assert code == 0, err
    assert {r["feature"]: r["state"] for r in rows} == {"audio": "materialized", "mono16k": "materialized", "onsets": "materialized"}


def test_the_examples_local_queue_sensor_launches_its_own_job(example, klio_env, catalogue, monkeypatch):
    monkeypatch.syspath_prepend(str(example.parent))
    defs = load_definitions(str(example))
    location, job, _ = find_feature_location(defs)
    assert (location.name, job.name) == ("my_features", "my_features_job")
    instance = DagsterInstance.get()
    LocalQueue(klio_env / "queue").publish_events([TrackEvent(t.track_id, uri=str(t.path)) for t in catalogue[:2]])
    result = evaluate_tick(defs, "my_features_local_ingestion", instance)
    (request,) = result.run_requests
    assert list(request.run_config["ops"]) == ["my_features"]
    outcome = execute_run(job, catalogue_of(defs), request)
    assert len(outcome.computed) == 4 and outcome.failed == []


@pytest.mark.parametrize(
    "target, message",
    [
        ("no_such_module", "no module 'no_such_module'"),
        ("missing.py", "no such file"),
        ("broken.py", "failed to load: ZeroDivisionError"),
        ("plain.py", "defines no feature graph"),
        ("nodefs.py", "defines no Definitions"),
    ],
)
def test_a_missing_or_broken_location_is_one_line_and_exit_2(tmp_path, klio_env, target, message):
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    (tmp_path / "plain.py").write_text("from dagster import Definitions\ndefs = Definitions()\n")
    (tmp_path / "nodefs.py").write_text("x = 1\n")
    code, _, err = klio("plan", "onsets", "--all-tracks", cwd=tmp_path, env=clean_env(klio_env, KLIO_DEFINITIONS=target))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_the_second_teams_location_works_by_module_name(klio_env):
    """KLIO_DEFINITIONS=examples.harmony used to fail with AttributeError: no attribute 'features_job'."""
    env = clean_env(klio_env, KLIO_DEFINITIONS="examples.harmony")
    code, out, err = klio("plan", "key", "--all-tracks", cwd=REPO, env=env)
    assert code == 0, err
    assert (out["to_compute"], out["skipped"]) == ([], [])
    code, _, err = klio("plan", "energy", "--all-tracks", cwd=REPO, env=env)
    assert code == 2 and "unknown feature(s) ['energy']" in err
