"""Run priority: runs for live events go before queued backfill batches.

Dagster's ``QueuedRunCoordinator`` dequeues runs by the ``dagster/priority``
tag (higher first), then by age, and caps concurrent runs per tag. Runs
launched by sensors for live events carry a high priority; runs launched by
a backfill carry Dagster's ``dagster/backfill`` tag, which the instance
limits (see :func:`run_queue_config`) so that a slot stays free for live
runs. A live run therefore waits for at most one backfill batch, and with
the default configuration for none.
"""

from __future__ import annotations

from klio_dagster.errors import ConfigurationError
from klio_dagster.orchestration.compat import BACKFILL_ID_TAG, PRIORITY_TAG
from klio_dagster.orchestration.tags import LANE_TAG

#: Priority of runs asked for by live events (Dagster's default is 0).
LIVE_PRIORITY = 100
LIVE_PRIORITY_TAGS = {PRIORITY_TAG: str(LIVE_PRIORITY), LANE_TAG: "live"}
#: Backfill runs (a backfill's batches) at most this many at a time.
MAX_CONCURRENT_BACKFILL_RUNS = 1


def run_queue_config(max_concurrent_runs: int = 2) -> str:
    """The ``run_coordinator`` section of ``dagster.yaml`` that gives live runs their slot."""
    if max_concurrent_runs < 1:
        raise ConfigurationError("max_concurrent_runs must be at least 1")
    return f"""\
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: {max_concurrent_runs}
    tag_concurrency_limits:
      - key: "{BACKFILL_ID_TAG}"
        limit: {MAX_CONCURRENT_BACKFILL_RUNS}
"""
