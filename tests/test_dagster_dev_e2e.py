"""End to end: `dagster dev` with both code locations of workspace.yaml, sensors running by default.

A message published to the local queue must end up, with no click, as
materialised features that the UI's GraphQL API and `klio-dagster status` show,
and the second team's feature must follow top-down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pubsub_emulator import PROJECT, create_topic_and_subscription, emulator_command
from servers import free_port, graphql, local_server, running_dagster_dev

from klio_dagster.events.local_queue import LocalQueue
from klio_dagster.events.messages import TrackEvent

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def dagster_dev(klio_env):
    with running_dagster_dev(klio_env) as port:
        yield port


def wait_until_materialized(cli, klio_env: Path, track_id: str, timeout_s: float) -> dict[str, str]:
    """Each feature's state for ``track_id`` once all are materialised (fails with the log otherwise)."""
    deadline = time.time() + timeout_s
    states: dict[str, str] = {}
    while time.time() < deadline:
        code, status = cli("status", track_id)  # exit 2 until the sensor registers the track
        states = {row["feature"]: row["state"] for row in status} if code == 0 else {}
        if states and all(s == "materialized" for s in states.values()):
            return states
        time.sleep(3)
    pytest.fail(f"{track_id} not materialised in {timeout_s:.0f} s: {states}\n" + (klio_env / "dagster-dev.log").read_text()[-3000:])


def test_published_tracks_are_materialised_without_a_click(dagster_dev, klio_env, catalogue, cli):
    port = dagster_dev
    tracks = catalogue[:2]
    LocalQueue(klio_env / "queue").publish_events([TrackEvent(t.track_id, uri=str(t.path)) for t in tracks])

    wait_until_materialized(cli, klio_env, tracks[1].track_id, 240)
    deadline = time.time() + 60

    data = graphql(
        port,
        '{ assetNodeOrError(assetKey: {path: ["spectrogram"]}) { ... on AssetNode { partitionKeys '
        "assetMaterializations(limit: 5) { partition metadataEntries { label } } } } }",
    )
    node = data["assetNodeOrError"]
    assert sorted(node["partitionKeys"]) == sorted(t.track_id for t in tracks)
    labels = {e["label"] for m in node["assetMaterializations"] for e in m["metadataEntries"]}
    assert {"uri", "preview", "code_version", "compute_s"} <= labels

    # Top-down across code locations: the harmony team's sensor runs `key` for the same tracks.
    query = '{ assetNodeOrError(assetKey: {path: ["key"]}) { ... on AssetNode { assetMaterializations(limit: 10) { partition runId } } } }'
    keyed: list[dict] = []
    while time.time() < deadline:
        keyed = graphql(port, query)["assetNodeOrError"]["assetMaterializations"]
        if len(keyed) >= len(tracks):
            break
        time.sleep(3)
    assert sorted(m["partition"] for m in keyed) == sorted(t.track_id for t in tracks), keyed
    assert len({m["runId"] for m in keyed}) == 1  # both tracks in one batched run


def test_pubsub_deployment_needs_only_environment_variables(klio_env, catalogue, cli, monkeypatch):
    """The configuration contract: set the variables, run `dagster dev`, publish, wait, read the status."""
    port = free_port()
    topic, sub = f"projects/{PROJECT}/topics/audio-events", f"projects/{PROJECT}/subscriptions/audio-events"
    with local_server(emulator_command(port), port, env={"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}"}, what="the Pub/Sub emulator"):
        create_topic_and_subscription(topic, sub)
        create_topic_and_subscription(f"{topic}-dead", f"{sub}-dead")
        monkeypatch.setenv("KLIO_PUBSUB_SUBSCRIPTION", sub)
        monkeypatch.setenv("KLIO_PUBSUB_DEAD_LETTER_TOPIC", f"{topic}-dead")
        with running_dagster_dev(klio_env):
            track = catalogue[2]
            code, out = cli("publish", track.track_id, "--uri", str(track.path), "--topic", f"{PROJECT}/audio-events")
            assert code == 0, out
            states = wait_until_materialized(cli, klio_env, track.track_id, 240)
    assert {"downsample", "beat_tracking", "energy", "speechiness", "instrumentalness", "spectrogram"} <= set(states)


def test_the_docs_example_serves_from_a_file_and_its_sensor_computes_a_published_track(klio_env, catalogue, tmp_path, monkeypatch):
    """docs/features.md's location, as a new team runs it: `dagster dev -f my_features.py`, then publish."""
    from test_docs_example import docs_example

    folder = tmp_path / "team"
    folder.mkdir()
    (folder / "my_features.py").write_text(docs_example())
    monkeypatch.setenv("KLIO_DEFINITIONS", str(folder / "my_features.py"))
    with running_dagster_dev(klio_env, ("-f", "my_features.py"), cwd=folder):
        track = catalogue[3]
        code, out = cli_publish(track)
        assert code == 0, out
        deadline = time.time() + 240
        states: dict[str, str] = {}
        while time.time() < deadline:
            done = subprocess.run(
                [str(Path(sys.executable).with_name("klio-dagster")), "status", track.track_id, "--json"],
                cwd=klio_env, capture_output=True, text=True, timeout=120,
            )
            if done.returncode == 0:
                states = {row["feature"]: row["state"] for row in json.loads(done.stdout)}
                if states.get("onsets") == "materialized":
                    break
            time.sleep(3)
        assert states == {"audio": "materialized", "mono16k": "materialized", "onsets": "materialized"}, (
            states, (klio_env / "dagster-dev.log").read_text()[-3000:]
        )


def cli_publish(track) -> tuple[int, str]:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("klio-dagster")), "publish", track.track_id, "--uri", str(track.path), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def _workers_of_instance(home: Path) -> list:
    """Beam SDK worker processes (and their forkers) serving runs of the Dagster instance at ``home``."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "klio_dagster.executors.worker_forker" in " ".join(process.info["cmdline"] or ()) and process.environ().get("DAGSTER_HOME") == str(home):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_terminating_a_run_in_the_ui_stops_its_beam_pipeline_and_workers(dagster_dev, klio_env):
    import psutil

    from klio_dagster.demo.catalogue import write_catalogue

    port = dagster_dev
    tracks = write_catalogue(klio_env / "data" / "media", n_tracks=10, duration_s=60.0, prefix="term")
    LocalQueue(klio_env / "queue").publish_events([TrackEvent(t.track_id, uri=str(t.path)) for t in tracks])
    runs_query = '{ runsOrError(filter: {statuses: [STARTED]}) { ... on Runs { results { runId } } } }'
    deadline, workers, run_id = time.time() + 240, [], None
    while time.time() < deadline and not (run_id and len(workers) >= 2):
        started = graphql(port, runs_query)["runsOrError"]["results"]
        run_id = started[0]["runId"] if started else None
        workers = _workers_of_instance(klio_env / "home")
        time.sleep(1)
    assert run_id and workers, "no Beam run started:\n" + (klio_env / "dagster-dev.log").read_text()[-3000:]

    answer = graphql(port, f'mutation {{ terminateRun(runId: "{run_id}") {{ __typename }} }}')
    assert answer["terminateRun"]["__typename"] == "TerminateRunSuccess", answer
    _, alive = psutil.wait_procs(workers, timeout=60)
    assert alive == [], f"Beam workers still running after termination: {[p.pid for p in alive]}"
    status_query = f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ status }} }} }}'
    deadline = time.time() + 60
    while time.time() < deadline and graphql(port, status_query)["runOrError"]["status"] != "CANCELED":
        time.sleep(1)
    assert graphql(port, status_query)["runOrError"]["status"] == "CANCELED"


def test_a_killed_commands_run_stops_showing_as_materializing_in_the_ui(dagster_dev, klio_env, cli):
    """A dead run must not haunt the UI: once its owner is gone, a sensor tick fails it and the assets follow."""
    from klio_dagster.demo.catalogue import write_catalogue

    port = dagster_dev
    tracks = write_catalogue(klio_env / "data" / "media", n_tracks=8, duration_s=60.0, prefix="dead")
    assert cli("ingest", *(str(t.path) for t in tracks))[0] == 0
    command = subprocess.Popen(
        [str(Path(sys.executable).with_name("klio-dagster")), "materialize", "spectrogram", "--all-tracks"],
        cwd=REPO, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    latest = '{ assetsLatestInfo(assetKeys: [{path: ["spectrogram"]}]) { inProgressRunIds } }'
    runs = '{ runsOrError(filter: {statuses: [STARTED]}) { ... on Runs { results { runId } } } }'
    deadline, run_id = time.time() + 240, None
    while time.time() < deadline and not run_id:
        started = graphql(port, runs)["runsOrError"]["results"]
        in_progress = graphql(port, latest)["assetsLatestInfo"][0]["inProgressRunIds"]
        run_id = next((r["runId"] for r in started if r["runId"] in in_progress), None)
        time.sleep(0.5)
    assert run_id, "the command's run never showed as materializing"
    os.killpg(command.pid, signal.SIGKILL)
    command.wait()

    status = f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ status }} }} }}'
    deadline = time.time() + 120
    while time.time() < deadline and graphql(port, latest)["assetsLatestInfo"][0]["inProgressRunIds"]:
        time.sleep(1)
    assert graphql(port, latest)["assetsLatestInfo"][0]["inProgressRunIds"] == []
    assert graphql(port, status)["runOrError"]["status"] == "FAILURE"
