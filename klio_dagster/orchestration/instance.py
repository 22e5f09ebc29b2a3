"""The local Dagster instance: its ``dagster.yaml``, written once by a command, never by a code location.

Storage is SQLite in the instance's folder, or Postgres when ``KLIO_POSTGRES_URL`` is set
(:mod:`klio_dagster.orchestration.postgres`): the URL stays in the environment.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dagster import DagsterInstance

from klio_dagster.errors import ConfigurationError
from klio_dagster.events.priority import run_queue_config
from klio_dagster.orchestration.postgres import POSTGRES_URL_VARIABLE, STORAGE_CONFIG

#: Dagster's run monitoring fails a run stuck starting (its launcher or run worker died before it
#: started); run retries then launch it again, but never a run that failed because pairs failed.
RECOVERY_CONFIG = """\
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  poll_interval_seconds: 30
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false
"""
_HEADER = "# Written by klio-dagster for a new local instance; edit freely, it is kept.\n"
#: Settings of a new local instance: SQLite storage in its folder, no telemetry, no pop-up on the UI's
#: first visit (`nux`), a run queue where live events' runs never wait behind a backfill, and
#: recovery from dead runs.
INSTANCE_CONFIG = (
    _HEADER + "telemetry:\n  enabled: false\nnux:\n  enabled: false\n" + run_queue_config(max_concurrent_runs=2) + RECOVERY_CONFIG
)
#: What earlier versions wrote: replaced by INSTANCE_CONFIG, since nobody edited it.
_EARLIER_CONFIGS = (
    _HEADER + "telemetry:\n  enabled: false\n" + run_queue_config(max_concurrent_runs=2) + RECOVERY_CONFIG,
    _HEADER + "telemetry:\n  enabled: false\n" + run_queue_config(max_concurrent_runs=2),
    "telemetry:\n  enabled: false\n",
    "# Written by klio-dagster's local profile (resources/local.py); edit freely, it is kept.\n"
    "telemetry:\n  enabled: false\n" + run_queue_config(max_concurrent_runs=2),
)


def instance_config(postgres: bool) -> str:
    """klio-dagster's ``dagster.yaml``: SQLite storage in the instance's folder, or Postgres at ``$KLIO_POSTGRES_URL``."""
    return INSTANCE_CONFIG + (STORAGE_CONFIG if postgres else "")


def write_local_instance_config(home: Path) -> None:
    """Create ``home`` with klio-dagster's ``dagster.yaml``, unless it has one of its own.

    Raises :class:`ConfigurationError` if ``KLIO_POSTGRES_URL`` asks for another storage than the
    instance's own ``dagster.yaml`` has: switching would hide the instance's history.
    """
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    postgres = bool(os.environ.get(POSTGRES_URL_VARIABLE))
    wanted = instance_config(postgres)
    if not config.exists() or config.read_text() in _EARLIER_CONFIGS:
        config.write_text(wanted)
        return
    current = config.read_text()
    if current == instance_config(not postgres):
        have, asked = ("Postgres", "SQLite (KLIO_POSTGRES_URL unset)") if not postgres else ("SQLite", "Postgres (KLIO_POSTGRES_URL set)")
        raise ConfigurationError(
            f"{config} keeps this instance's history in {have}, but the environment asks for {asked}: "
            f"use another DAGSTER_HOME for {asked.split()[0]}, or {'set' if not postgres else 'unset'} KLIO_POSTGRES_URL"
        )


def open_instance() -> DagsterInstance:
    """The instance at ``DAGSTER_HOME``, opened under an exclusive lock beside its ``dagster.yaml``.

    Opening a new SQLite instance creates its databases and stamps their schema versions; two
    commands doing that at once stamped two versions into one database (seen: every later command
    then failed in alembic, "more than one head present"). The lock makes the second wait until the
    first has created them; opening an existing instance takes milliseconds under it.
    """
    home = Path(os.environ["DAGSTER_HOME"])
    with open(home / ".klio-open.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return DagsterInstance.get()
