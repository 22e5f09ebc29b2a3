"""The local Dagster instance: its ``dagster.yaml``, written once by a command, never by a code location."""

from __future__ import annotations

from pathlib import Path

from klio_dagster.events.priority import run_queue_config

#: Settings of a new local instance: SQLite storage in its folder, no telemetry, no pop-ups, and a
#: run queue where live events' runs never wait behind a backfill.
INSTANCE_CONFIG = (
    "# Written by klio-dagster for a new local instance; edit freely, it is kept.\n"
    "telemetry:\n  enabled: false\n" + run_queue_config(max_concurrent_runs=2)
)
#: What earlier versions wrote: replaced by INSTANCE_CONFIG, since nobody edited it.
_EARLIER_CONFIGS = (
    "telemetry:\n  enabled: false\n",
    "# Written by klio-dagster's local profile (resources/local.py); edit freely, it is kept.\n"
    "telemetry:\n  enabled: false\n" + run_queue_config(max_concurrent_runs=2),
)


def write_local_instance_config(home: Path) -> None:
    """Create ``home`` with klio-dagster's ``dagster.yaml``, unless it has one of its own."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() in _EARLIER_CONFIGS:
        config.write_text(INSTANCE_CONFIG)
