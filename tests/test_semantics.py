"""The CLI contract and the lineage semantics: skip, bottom-up, force, ping, batching, isolation.

Every test runs in both tiers (native: a partition per track; ledger: track shards and a ledger),
on both instance storages.
"""

from __future__ import annotations

import shutil

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, RunsFilter

pytestmark = pytest.mark.integration
#: The same semantics on both instance storages: SQLite (embedded) and a real Postgres server.
INSTANCE_STORAGES = ("sqlite", "postgres")
TIERS = ("native", "ledger")


def pairs(items) -> list[tuple[str, str]]:
    return sorted(tuple(p) for p in items)


def test_bottom_up_computes_only_the_missing_line_in_one_run(cli, ingested):
    track = ingested[0]
    code, out = cli("materialize", "energy", "--tracks", track)
    assert code == 0, out
    assert pairs(out["computed"]) == [("beat_tracking", track), ("downsample", track), ("energy", track)]
    assert len(out["run_ids"]) == 1
    code, status = cli("status", track)
    states = {row["feature"]: row["state"] for row in status}
    assert states == {
        "audio": "materialized",
        "downsample": "materialized",
        "beat_tracking": "materialized",
        "energy": "materialized",
        "speechiness": "missing",
        "instrumentalness": "missing",
        "spectrogram": "missing",
    }


def test_command_runs_carry_the_code_location_and_job_the_ui_knows(cli, ingested):
    code, out = cli("materialize", "downsample", "--tracks", ingested[0])
    run = DagsterInstance.get().get_run_by_id(out["run_ids"][0])
    assert run.remote_job_origin.location_name == "klio_reference"  # workspace.yaml's name for `definitions`
    assert run.job_name == "klio_features_job" and run.tags["dagster/code_location"] == "klio_reference"
    assert run.tags["dagster/max_retries"] == "0"  # the command reports its outcome; the daemon never reruns it


def test_tracks_file_is_accepted_wherever_tracks_are(cli, ingested, tmp_path):
    listed = tmp_path / "tracks.txt"
    listed.write_text(f"# a Klio job's input list\n{ingested[0]}\n\n{ingested[1]}  # the second\n{ingested[0]}\n")
    assert cli("plan", "energy", "--tracks-file", str(listed)) == cli("plan", "energy", "--tracks", *ingested[:2])
    code, out = cli("materialize", "downsample", "--tracks-file", str(listed))
    assert code == 0 and pairs(out["computed"]) == [("downsample", ingested[0]), ("downsample", ingested[1])]

    for text, error in (("ok-id\nbad id!\n", "line 2"), ("# nothing\n\n", "names no track IDs"), ("ghost\n", "not registered")):
        listed.write_text(text)
        code, err = cli("plan", "energy", "--tracks-file", str(listed))
        assert code == 2 and error in err, (text, err)
    code, err = cli("plan", "energy", "--tracks-file", str(tmp_path / "missing.txt"))
    assert code == 2 and "cannot read it" in err
    code, err = cli("plan", "energy", "--tracks-file", str(listed), "--tracks", ingested[0])
    assert code == 2  # one way of naming tracks at a time


def test_second_identical_materialize_computes_nothing(cli, ingested):
    code, first = cli("materialize", "energy", "speechiness", "--all-tracks")
    assert code == 0 and len(first["computed"]) == 4 * len(ingested)
    code, second = cli("materialize", "energy", "speechiness", "--all-tracks")
    assert code == 0
    assert second["computed"] == [] and second["run_ids"] == []
    assert pairs(second["skipped"]) == pairs(first["computed"])


def test_force_recomputes_only_the_asked_features(cli, ingested):
    track = ingested[1]
    cli("materialize", "energy", "--tracks", track)
    _, before = cli("status", track)
    code, out = cli("materialize", "energy", "--tracks", track, "--force")
    assert code == 0
    assert pairs(out["computed"]) == [("energy", track)]
    _, after = cli("status", track)
    run_of = lambda rows, f: next(r["run_id"] for r in rows if r["feature"] == f)  # noqa: E731
    assert run_of(after, "downsample") == run_of(before, "downsample")
    assert run_of(after, "energy") != run_of(before, "energy")


def test_ping_walks_the_plan_and_computes_nothing(cli, ingested, klio_env):
    track = ingested[2]
    code, out = cli("materialize", "energy", "--tracks", track, "--ping")
    assert code == 0
    assert out["computed"] == [] and out["run_ids"] == []
    assert pairs(out["pinged"]) == [("beat_tracking", track), ("downsample", track), ("energy", track)]
    _, status = cli("status", track)
    energy = next(r for r in status if r["feature"] == "energy")
    assert energy["state"] == "missing" and energy["ping_decision"] == "compute" and energy["last_ping"]
    assert not any((klio_env / "store").glob("energy/*"))


def test_plan_is_topological_and_runs_nothing(cli, ingested):
    a, b = ingested[0], ingested[3]
    code, out = cli("plan", "energy", "speechiness", "--tracks", a, b)
    assert code == 0
    features = [f for f, _ in out["to_compute"]]
    assert features == ["downsample"] * 2 + ["beat_tracking"] * 2 + ["energy"] * 2 + ["speechiness"] * 2
    assert out["skipped"] == []
    assert DagsterInstance.get().get_runs_count() == 0


def test_any_set_of_tracks_is_one_run(cli, ingested):
    chosen = [ingested[0], ingested[3], ingested[5]]
    code, out = cli("materialize", "spectrogram", "--tracks", *chosen)
    assert code == 0
    assert len(out["run_ids"]) == 1 and len(out["computed"]) == 6
    (run,) = DagsterInstance.get().get_runs(RunsFilter(run_ids=out["run_ids"]))
    assert run.tags["klio/tracks"] == "3"


def test_materialisation_metadata(cli, ingested, tier):
    track = ingested[0]
    cli("materialize", "spectrogram", "--tracks", track)
    _, status = cli("status", track)
    downsample = next(r for r in status if r["feature"] == "downsample")["metadata"]
    assert downsample["sample_rate_hz"] == 22050
    assert abs(downsample["duration_s"] - 6.0) < 0.01
    for key in ("uri", "code_version", "version", "libraries", "compute_s", "source_uri", "host", "executor"):
        assert key in downsample, key
    assert downsample["uri"].endswith(f"downsample/{track}.wav")
    if tier == "native":  # per-track materialisations, with the UI's preview (the ledger tier keeps none)
        instance = DagsterInstance.get()
        (record,) = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("spectrogram"), asset_partitions=[track]), limit=1
        ).records
        spectrogram = record.asset_materialization.metadata
        assert "data:image/webp;base64," in spectrogram["preview"].value
        assert spectrogram["full_resolution"].value.endswith(f"spectrogram/{track}.png")


def test_isolation_bad_files_fail_alone(cli, catalogue, klio_env):
    good = [str(t.path) for t in catalogue[:3]]
    empty = klio_env / "empty.wav"
    empty.write_bytes(b"")
    corrupt = klio_env / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + bytes(range(256)) * 20)
    vanished = klio_env / "vanished.ogg"
    shutil.copy(catalogue[2].path, vanished)
    code, out = cli("ingest", *good, str(empty), str(corrupt), str(vanished))
    assert code == 0
    vanished.unlink()

    code, out = cli("materialize", "speechiness", "--all-tracks")
    assert code == 1
    failed = {(f["feature"], f["track"]): f["error"] for f in out["failed"]}
    assert set(failed) == {
        ("downsample", "empty"), ("speechiness", "empty"),
        ("downsample", "corrupt"), ("speechiness", "corrupt"),
        ("downsample", "vanished"), ("speechiness", "vanished"),
    }
    assert "empty" in failed[("downsample", "empty")]
    assert "cannot decode" in failed[("downsample", "corrupt")]
    assert "does not exist" in failed[("downsample", "vanished")]
    assert "input 'downsample' failed" in failed[("speechiness", "empty")]
    assert len(out["computed"]) == 2 * len(good) and len(out["run_ids"]) == 1

    _, status = cli("status", "corrupt")
    row = next(r for r in status if r["feature"] == "downsample")
    assert row["state"] == "failed" and "cannot decode" in row["error"]


def test_invalid_input_exits_2_and_writes_nothing(cli, catalogue, klio_env):
    path = str(catalogue[0].path)
    for args in (
        ("ingest", path, "--id", "../escape"),
        ("ingest", path, "--id", "has/slash"),
        ("ingest", path, "--id", "a" * 129),
        ("ingest", path, "--id", "tëst"),
        ("ingest", str(klio_env / "no-such-file.wav")),
        ("materialize", "energy", "--tracks", "bad..id"),
        ("materialize", "no_such_feature", "--tracks", "t"),
        ("materialize", "energy", "--tracks", "never-ingested"),
        ("plan", "energy", "--tracks", "-x"),
        ("status", "a/b"),
    ):
        code, err = cli(*args)
        assert code == 2, (args, err)
        assert "error" in err
    assert not any((klio_env / "store").rglob("*.*"))
    code, out = cli("plan", "energy", "--all-tracks")
    assert code == 0 and out["to_compute"] == [] and out["skipped"] == []  # no track was registered


def test_progress_bar_only_on_a_terminal(capsys, monkeypatch):
    from klio_dagster.cli.output import progress

    with progress("materialize", 4) as quiet:
        quiet.update()
    assert capsys.readouterr().err == ""

    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    with progress("materialize", 4) as bar:
        for _ in range(4):
            bar.update()
    err = capsys.readouterr().err
    assert "materialize" in err and "4/4" in err


def test_progress_counts_each_pair_as_the_run_records_it(ingested, monkeypatch):
    """The hook behind the progress bar: events in the native tier (batched on Postgres), the ledger polled in the ledger tier."""
    from runs import catalogue_of

    import definitions  # imported for the test's tier
    from klio_dagster import find_feature_location
    from klio_dagster.orchestration.runs import RunProgress, execute_plan
    from klio_dagster.planning.lineage import plan_against
    from klio_dagster.tiers.base import Recorder

    monkeypatch.setattr(RunProgress, "interval_s", 0.05)
    monkeypatch.setattr(Recorder, "flush_interval_s", 0.0)  # recorders that write in bulk write each result as it comes
    location, job, _ = find_feature_location(definitions.defs)
    catalogue = catalogue_of(definitions.defs)
    work = plan_against(catalogue, location.graph, ["downsample"], ingested)
    seen: list[int] = []
    outcome = execute_plan(location, job, catalogue, work, [], tags={}, on_progress=seen.append)
    total = len(ingested)
    assert len(outcome.computed) == total and seen[-1] == total
    assert seen == sorted(seen) and any(0 < n < total for n in seen), seen
