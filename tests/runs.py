"""Running a plan of a location in the test's process, as the CLI does."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import DagsterInstance, Definitions

from klio_dagster import find_feature_location
from klio_dagster.orchestration.runs import RunOutcome, execute_run, run_request_for
from klio_dagster.planning.planner import Plan


def run_plan(defs: Definitions, plan: Plan, force: Sequence[str] = (), tags: dict[str, str] | None = None) -> RunOutcome:
    """Execute ``plan`` as one run of the location's feature job; wait for it."""
    location, job, _ = find_feature_location(defs)
    request = run_request_for(location, plan, list(force), run_key=None, tags=tags or {})
    return execute_run(job, DagsterInstance.get(), request)
