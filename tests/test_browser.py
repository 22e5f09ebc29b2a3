"""The Dagster UI in a real browser: Chromium from the system packages, driven by Playwright.

Against `dagster dev` with both code locations of workspace.yaml on a small
demo instance: the asset graph renders, a partition shows its picture, a
failed track is a failed partition, a run the CLI made names its code
location, and a "Materialize" of `energy` for a fresh track, clicked in the
UI, computes exactly that track's line. ``KLIO_SCREENSHOTS=docs/images``
writes the screenshots the docs show.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import graphql, running_dagster_dev

pytestmark = pytest.mark.e2e

FEATURES = ("downsample", "beat_tracking", "energy", "speechiness", "instrumentalness", "spectrogram")


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no Chromium here: `make browser` installs it from the system packages (needs root and apt-get)")
    return path


@pytest.fixture
def page(chromium_path) -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is in the dev extras: run `make setup`")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, args=["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def _shot(page, klio_env: Path, name: str) -> None:
    folder = Path(os.environ.get("KLIO_SCREENSHOTS") or klio_env / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def _runs(port: int, tag: tuple[str, str]) -> list[dict]:
    query = (
        '{ runsOrError(filter: {tags: [{key: "%s", value: "%s"}]}) { ... on Runs { results { runId status '
        "repositoryOrigin { repositoryLocationName } } } } }" % tag
    )
    return graphql(port, query)["runsOrError"]["results"]


def _materialized_in(port: int, run_id: str) -> list[tuple[str, str]]:
    query = (
        '{ logsForRun(runId: "%s") { ... on EventConnection { events { __typename '
        "... on MaterializationEvent { assetKey { path } partition } } } } }" % run_id
    )
    events = graphql(port, query)["logsForRun"]["events"]
    return [(e["assetKey"]["path"][-1], e["partition"]) for e in events if e["__typename"] == "MaterializationEvent"]


def test_the_ui_shows_the_graph_pictures_failures_and_runs_a_bottom_up_materialize(page, cli, catalogue, klio_env):
    shown, fresh = catalogue[0].track_id, catalogue[2].track_id
    broken = klio_env / "broken.flac"
    broken.write_bytes(b"fLaC" + bytes(range(256)) * 20)
    code, out = cli("ingest", str(catalogue[0].path), str(catalogue[2].path), str(broken))
    assert code == 0, out
    code, made = cli("materialize", "spectrogram", "energy", "--tracks", shown, "broken")
    assert code == 1 and {f["track"] for f in made["failed"]} == {"broken"}

    with running_dagster_dev(klio_env) as port:
        base = f"http://127.0.0.1:{port}"

        # A run the CLI made is listed under its code location and job.
        (cli_run,) = [r for r in _runs(port, ("klio/source", "cli"))]
        assert cli_run["repositoryOrigin"]["repositoryLocationName"] == "klio_reference"

        # The reference location's asset graph renders, with the other team's feature below it and no pop-up.
        page.goto(f"{base}/locations/klio_reference/asset-groups/features")
        for name in (*FEATURES, "audio", "key"):
            page.get_by_text(name, exact=True).first.wait_for()
        assert page.get_by_text("Join the Dagster community").count() == 0
        _shot(page, klio_env, "ui-lineage")

        # A partition's materialisation shows the spectrogram inline, at a readable size.
        page.goto(f"{base}/assets/spectrogram?view=events&partition={shown}")
        picture = page.locator('img[src^="data:image/webp"]').first
        picture.wait_for()
        box = picture.bounding_box()
        assert box["width"] >= 700 and box["height"] >= 250, box
        _shot(page, klio_env, "ui-spectrogram")

        # The track that failed is a failed partition.
        page.goto(f"{base}/assets/spectrogram?view=partitions")
        page.get_by_text("Failed (1)").wait_for()
        _shot(page, klio_env, "ui-failed-partition")

        # Materialize energy for the fresh (only missing) track, clicked as a user would.
        page.goto(f"{base}/assets/energy?view=partitions")
        page.get_by_role("button", name="Materialize…").first.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("button", name="Missing", exact=True).click()
        dialog.get_by_text("1 partition", exact=True).wait_for()
        dialog.locator("button:has-text('Launch')").last.click()
        deadline, run = time.time() + 240, None
        while time.time() < deadline:
            runs = _runs(port, ("dagster/partition", fresh))
            if runs and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                run = runs[0]
                break
            time.sleep(2)
        assert run is not None, "the UI's run did not finish within 240 s"
        assert run["status"] == "SUCCESS", run
        assert _materialized_in(port, run["runId"]) == [("downsample", fresh), ("beat_tracking", fresh), ("energy", fresh)]
        query = '{ assetNodes(assetKeys: [{path: ["energy"]}]) { staleStatusByPartition(partitions: ["%s"]) } }' % fresh
        assert graphql(port, query)["assetNodes"][0]["staleStatusByPartition"] == ["FRESH"]
        page.goto(f"{base}/runs/{run['runId']}")
        page.get_by_text("RUN_SUCCESS").first.wait_for()
        page.get_by_placeholder("Filter…").fill("type:ASSET_MATERIALIZATION")
        page.get_by_text("Materialized value energy").first.wait_for()
        _shot(page, klio_env, "ui-bottom-up-run")
