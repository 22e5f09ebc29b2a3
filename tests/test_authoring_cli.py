"""Evolution, provenance and cost through the CLI, as a researcher changing a feature uses them.

A location is changed the way a user changes one (a new code version in a
new file), then ``plan --stale`` / ``--missing``, ``status`` (why),
``explain`` and ``plan``'s estimate are checked against what was recorded.
``new-feature`` scaffolds a module whose own test passes and that a location
can use at once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from klio_dagster.cli import main

pytestmark = pytest.mark.integration

BUMPED_BEATS = '''
from dataclasses import replace
from examples.reference_graph import reference_graph
from klio_dagster import FeatureGraph, build_feature_definitions

graph = FeatureGraph([replace(f, code_version="next") if f.name == "beat_tracking" else f for f in reference_graph.all_features])
defs = build_feature_definitions(graph)
'''


def test_a_new_code_version_is_found_explained_and_backfilled_exactly(cli, ingested, klio_env, monkeypatch):
    a, b, *others = ingested
    code, out = cli("materialize", "energy", "speechiness", "--tracks", a, b)
    assert code == 0 and not out["failed"]

    location = klio_env / "bumped_beats.py"
    location.write_text(BUMPED_BEATS)
    monkeypatch.setenv("KLIO_DEFINITIONS", str(location))

    code, out = cli("plan", "energy", "speechiness", "--all-tracks", "--stale")
    assert code == 0
    assert out["to_compute"] == [["beat_tracking", a], ["beat_tracking", b], ["energy", a], ["energy", b]]

    code, rows = cli("status", a)
    why = {r["feature"]: r.get("why") for r in rows}
    assert "code version 1 -> next" in why["beat_tracking"]
    assert "input 'beat_tracking' is now version" in why["energy"]
    assert why["speechiness"] is None and why["downsample"] is None

    code, out = cli("materialize", "energy", "speechiness", "--all-tracks", "--missing")
    assert code == 0 and not out["failed"]
    assert {t for _, t in out["computed"]} == set(others)  # the stale tracks are left for --stale

    code, out = cli("materialize", "energy", "--all-tracks", "--stale")
    assert code == 0 and sorted(map(tuple, out["computed"])) == sorted(
        [("beat_tracking", a), ("beat_tracking", b), ("energy", a), ("energy", b)]
    )
    code, rows = cli("status", a)
    assert {r["feature"]: r["state"] for r in rows if r["feature"] in ("energy", "speechiness")} == {
        "energy": "materialized", "speechiness": "materialized"
    }
    code, message = cli("plan", "energy", "--all-tracks", "--stale", "--force")
    assert code == 2 and "pick one" in message


def test_explain_follows_the_inputs_an_output_was_made_from(cli, ingested):
    track = ingested[0]
    assert cli("materialize", "energy", "--tracks", track)[0] == 0
    code, report = cli("explain", "energy", track)
    assert code == 0 and report["state"] == "materialized"
    for key in ("code_version", "version", "libraries", "executor", "host", "compute_s", "uri", "run_id", "data_version"):
        assert report.get(key) not in (None, ""), key
    assert report["executor"] == "in_process" and "librosa" in report["libraries"]
    inputs = {i["feature"]: i for i in report["inputs"]}
    assert set(inputs) == {"beat_tracking", "downsample"}
    assert report["input_data_versions"] == {n: i["data_version"] for n, i in inputs.items()}  # in the metadata too
    downsample = inputs["downsample"]
    assert downsample["decode"] == {"sample_rate": 22_050}
    assert [i["feature"] for i in downsample["inputs"]] == ["audio"]
    old_downsample = downsample["data_version"]

    # downsample recomputed from another file: energy's provenance still names the input it was made from.
    assert cli("materialize", "downsample", "--tracks", track, "--force")[0] == 0
    code, report = cli("explain", "energy", track)
    assert {i["feature"]: i for i in report["inputs"]}["downsample"]["data_version"] == old_downsample

    code, message = cli("explain", "energy", ingested[1])
    assert code == 2 and "no recorded output" in message
    code, message = cli("explain", "no_such_feature", track)
    assert code == 2 and "unknown feature" in message


def test_plan_estimates_cost_from_past_runs_and_says_what_it_cannot_estimate(cli, ingested, capsys):
    code, out = cli("plan", "energy", "--tracks", *ingested[:2])
    assert out["estimate"]["unmeasured"] == ["beat_tracking", "downsample", "energy"] and out["estimate"]["cpu_s"] == 0
    assert cli("materialize", "energy", "--tracks", *ingested[:2])[0] == 0
    code, out = cli("plan", "energy", "--tracks", *ingested, "--force")
    estimate = out["estimate"]
    assert estimate["unmeasured"] == [] and estimate["workers"] == 1  # 6 tracks: in-process (beam_min_tracks = 8)
    per = estimate["per_feature"]
    assert per["beat_tracking"]["basis"] == "per audio minute" and per["beat_tracking"]["measured_outputs"] == 2
    # beat_tracking for the 4 tracks never computed (energy alone is forced), all as long as the 2 measured ones.
    assert per["beat_tracking"]["pairs"] == 4 and per["energy"]["pairs"] == 6
    assert per["beat_tracking"]["cpu_s"] == pytest.approx(4 * per["beat_tracking"]["s_per_track"], rel=0.05, abs=0.02)
    assert estimate["cpu_s"] == pytest.approx(sum(v["cpu_s"] for v in per.values()), abs=0.2)
    capsys.readouterr()
    assert main(["plan", "energy", "--tracks", *ingested, "--force"]) == 0
    assert "CPU s" in capsys.readouterr().out


def test_new_feature_scaffolds_a_module_whose_test_passes_and_a_location_can_use(cli, klio_env, ingested, monkeypatch):
    folder = klio_env / "mine"
    folder.mkdir()
    code, _ = cli("new-feature", "loudness", "--dir", str(folder))
    assert code == 0 and (folder / "loudness.py").exists() and (folder / "test_loudness.py").exists()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_loudness.py"],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout

    before = (folder / "loudness.py").read_text()
    code, message = cli("new-feature", "loudness", "--dir", str(folder))
    assert code == 2 and "already exist" in message and (folder / "loudness.py").read_text() == before
    for bad in ("2fast", "class", "audio", "my-feature"):
        code, message = cli("new-feature", bad, "--dir", str(folder))
        assert code == 2 and "cannot name a feature" in message
    code, message = cli("new-feature", "ok_name", "--dir", str(folder / "absent"))
    assert code == 2 and "no such folder" in message
    (folder / "test_blocked.py").symlink_to(folder / "nowhere" / "x.py")  # unwritable, though exists() is False
    code, message = cli("new-feature", "blocked", "--dir", str(folder))
    assert code == 2 and "nothing was written" in message and not (folder / "blocked.py").exists()

    (folder / "my_location.py").write_text(
        "from klio_dagster import FeatureGraph, build_feature_definitions\n"
        "from loudness import loudness\n\n"
        "defs = build_feature_definitions(FeatureGraph([loudness]), name='mine')\n"
    )
    monkeypatch.setenv("KLIO_DEFINITIONS", str(folder / "my_location.py"))
    code, out = cli("materialize", "loudness", "--tracks", ingested[0])
    assert code == 0 and out["computed"] == [["loudness", ingested[0]]]
    code, _ = cli("new-feature", "second")  # default: the folder of KLIO_DEFINITIONS' file
    assert code == 0 and Path(folder / "second.py").exists()
