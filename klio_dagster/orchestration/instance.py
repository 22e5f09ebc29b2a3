"""The local Dagster instance: its ``dagster.yaml``, written once by a command, never by a code location."""

from __future__ import annotations

from pathlib import Path

from klio_dagster.events.priority import run_queue_config

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


def write_local_instance_config(home: Path) -> None:
    """Create ``home`` with klio-dagster's ``dagster.yaml``, unless it has one of its own."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() in _EARLIER_CONFIGS:
        config.write_text(INSTANCE_CONFIG)
