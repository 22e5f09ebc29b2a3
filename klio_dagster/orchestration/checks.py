"""Each feature's pandera schema as a Dagster asset check.

A track's output is validated before it is stored; one that fails is not
stored and its partition fails. A run yields one evaluation per feature it
validated: passed if every track it validated passed, with the tracks that
failed and their errors. A run over one partition or a range (the UI's)
yields an ``AssetCheckResult`` for the checks it selected; otherwise the step
yields the ``AssetCheckEvaluation`` itself: Dagster resolves a result's target
materialisation from the run's partition (a run over a set of tracks has
none), and warns of a result for a check the run did not select (an ancestor
computed bottom-up).

dagster-pandera is not used: it turns a schema into the type check of an
``Output``, and the feature step yields one materialisation per track instead
of outputs, so such a check would never run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
)

from klio_dagster.core.execution import PairResult
from klio_dagster.core.graph import FeatureGraph

SCHEMA_CHECK = "schema"
#: Failed tracks listed in a check result's metadata.
_LISTED = 50


def schema_check_specs(graph: FeatureGraph) -> list[AssetCheckSpec]:
    """One ``schema`` check per feature that declares a pandera schema."""
    return [
        AssetCheckSpec(
            SCHEMA_CHECK,
            asset=f.asset_key,
            description=(
                f"Every track's {f.name} is validated with its pandera schema before it is stored; "
                "a track that fails is not stored and its partition fails."
            ),
        )
        for f in graph
        if f.schema is not None
    ]


class SchemaTally:
    """The schema checks a run made, per feature: tracks validated and tracks that failed, with errors."""

    def __init__(self) -> None:
        self._validated: dict[str, int] = defaultdict(int)
        self._failed: dict[str, dict[str, str]] = defaultdict(dict)

    def add(self, result: PairResult) -> None:
        if result.valid is None:
            return
        self._validated[result.feature] += 1
        if not result.valid:
            self._failed[result.feature][result.track_id] = result.error or ""

    def results(self, *, results_for: set[AssetCheckKey]) -> Iterator[AssetCheckResult | AssetCheckEvaluation]:
        """One evaluation per feature validated: a result for the checks in ``results_for``, else the evaluation itself."""
        for feature, validated in self._validated.items():
            failed = self._failed.get(feature, {})
            fields = {
                "asset_key": AssetKey(feature),
                "check_name": SCHEMA_CHECK,
                "passed": not failed,
                "severity": AssetCheckSeverity.ERROR,
                "metadata": {
                    "tracks_validated": validated,
                    "tracks_failed": len(failed),
                    "failed_tracks": MetadataValue.json(dict(list(failed.items())[:_LISTED])),
                },
                "description": f"{len(failed)} of {validated} tracks failed {feature}'s schema" if failed else None,
            }
            key = AssetCheckKey(AssetKey(feature), SCHEMA_CHECK)
            yield AssetCheckResult(**fields) if key in results_for else AssetCheckEvaluation(**fields)
