"""Postgres as the instance storage: the configuration ``klio-dagster init`` writes, and that runs use it.

The semantics modules (test_semantics, test_staleness, test_lineage, test_ui_runs) run every
test on SQLite and on this real Postgres server (``INSTANCE_STORAGES``).
"""

from __future__ import annotations

import pytest
from dagster import DagsterInstance

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
