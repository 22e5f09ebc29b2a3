"""Postgres as the instance storage: the configuration ``klio-dagster init`` writes, and that runs use it.

The semantics modules (test_semantics, test_staleness, test_lineage, test_ui_runs) run every
test on SQLite and on this real Postgres server (``INSTANCE_STORAGES``).
"""

from __future__ import annotations

import pytest
from dagster import DagsterEventType, DagsterInstance

from klio_dagster.orchestration.instance import instance_config
from klio_dagster.orchestration.postgres import POSTGRES_URL_VARIABLE

pytestmark = pytest.mark.integration
INSTANCE_STORAGES = ("postgres",)


def test_runs_record_into_postgres_and_the_url_stays_in_the_environment(cli, ingested, klio_env):
    config = (klio_env / "home" / "dagster.yaml").read_text()
    assert f"env: {POSTGRES_URL_VARIABLE}" in config and "postgresql" not in config  # no URL, no password on disk
    code, out = cli("materialize", "energy", "--tracks", ingested[0])
    assert code == 0 and not out["failed"]
    instance = DagsterInstance.get()
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    code, rows = cli("status", ingested[0])
    assert {r["feature"]: r["state"] for r in rows}["energy"] == "materialized"


def test_a_storage_switch_is_refused_rather_than_hiding_the_history(cli, ingested, klio_env, monkeypatch):
    monkeypatch.delenv(POSTGRES_URL_VARIABLE)
    code, message = cli("plan", "energy", "--tracks", ingested[0])
    assert code == 2 and "keeps this instance's history in Postgres" in message and "set KLIO_POSTGRES_URL" in message
    (klio_env / "home" / "dagster.yaml").write_text(instance_config(False))
    monkeypatch.setenv(POSTGRES_URL_VARIABLE, "postgresql+psycopg2://nobody@127.0.0.1:1/none")
    code, message = cli("plan", "energy", "--tracks", ingested[0])
    assert code == 2 and "keeps this instance's history in SQLite" in message


def test_on_postgres_a_runs_materialisations_are_stored_in_batches_per_feature(cli, ingested, klio_env, monkeypatch):
    from dagster._core.storage.event_log.base import EventLogStorage

    from klio_dagster.orchestration.compat import stores_event_batches

    instance = DagsterInstance.get()
    assert stores_event_batches(instance)
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "0")
    assert not stores_event_batches(instance)  # batching off: one write per pair, as on SQLite
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    batches: list[tuple[str, int]] = []
    storage_class = type(instance.event_log_storage)
    original = storage_class.store_event_batch

    def spy(self, events):
        if events[0].get_dagster_event().event_type == DagsterEventType.ASSET_MATERIALIZATION:
            batches.append((events[0].get_dagster_event().asset_key.path[-1], len(events)))
        return original(self, events)

    monkeypatch.setattr(storage_class, "store_event_batch", spy)
    assert storage_class.store_event_batch is not EventLogStorage.store_event_batch
    code, out = cli("materialize", "energy", "--tracks", *ingested[:3])
    assert code == 0 and len(out["computed"]) == 9
    assert batches == [("downsample", 3), ("beat_tracking", 3), ("energy", 3)]  # parents first, one write each
    code, rows = cli("explain", "energy", ingested[1])
    assert code == 0 and [i["feature"] for i in rows["inputs"]] == ["beat_tracking", "downsample"]
    assert all(i.get("note") is None for i in rows["inputs"])  # every input pointer names its materialisation
