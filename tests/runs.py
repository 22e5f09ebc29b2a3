"""Running a plan of a location in the test's process, as the CLI does."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import DagsterInstance, Definitions

from klio_dagster import FeatureExecutorResource, FeatureStoreResource, OutputEventsResource, find_feature_location
from klio_dagster.orchestration.resources import TrackSourcesResource
from klio_dagster.orchestration.runs import RunOutcome, execute_run, run_request_for
from klio_dagster.planning.planner import Plan
from klio_dagster.tiers import Catalogue


def run_plan(defs: Definitions, plan: Plan, force: Sequence[str] = (), tags: dict[str, str] | None = None) -> RunOutcome:
    """Execute ``plan`` as one run of the location's feature job; wait for it."""
    location, job, _ = find_feature_location(defs)
    request = run_request_for(location, plan, list(force), run_key=None, tags=tags or {})
    return execute_run(job, catalogue_of(defs), request)


def catalogue_of(defs: Definitions) -> Catalogue:
    """The location's tier bound to the current instance and the location's store."""
    location, _, _ = find_feature_location(defs)
    with defs.resources["klio_store"].process_config_and_initialize_cm() as store:
        return location.tier.open(DagsterInstance.get(), store.get_store())


def local_resources(klio_env) -> dict:
    """The embedded resources on the test's store, executing in-process."""
    return {
        "klio_store": FeatureStoreResource(uri=str(klio_env / "store")),
        "klio_executor": FeatureExecutorResource(mode="in_process"),
        "klio_output": OutputEventsResource(),
        "klio_sources": TrackSourcesResource(),
    }
