"""The Dagster events one (feature, track) outcome is recorded as, in the native tier."""

from __future__ import annotations

from typing import Any

import numpy as np
from dagster import AssetMaterialization, AssetObservation, MetadataValue

from klio_dagster.core.execution import PairResult
from klio_dagster.core.features import Feature
from klio_dagster.orchestration.compat import CODE_VERSION_TAG, DATA_VERSION_TAG
from klio_dagster.orchestration.previews import link_to, preview_markdown
from klio_dagster.orchestration.tags import FAILED, STATUS_TAG


def plain(value: Any) -> Any:
    """``value`` as a plain Python scalar (numpy's become Python's), for metadata."""
    return value.item() if isinstance(value, np.generic) else value


def materialization(result: PairResult, feature: Feature, input_tags: dict[str, str]) -> AssetMaterialization:
    """One computed pair: its metadata, preview, data version, code version and input provenance tags."""
    metadata: dict[str, Any] = {k: plain(v) for k, v in result.metadata.items()}
    metadata["uri"] = MetadataValue.path(result.uri or "")
    if result.input_versions:  # also in Dagster's input tags; here for people reading the metadata
        metadata["input_data_versions"] = dict(result.input_versions)
    if "source_uri" in metadata:
        metadata["source_uri"] = MetadataValue.path(metadata["source_uri"])
    preview = preview_markdown(result.feature, result.track_id, result.preview_b64) if result.preview_b64 else None
    if preview:
        metadata["preview"] = MetadataValue.md(preview)
    if result.uri and feature.output_format.name == "png":
        metadata["full_resolution"] = link_to(result.uri)
    return AssetMaterialization(
        asset_key=result.feature,
        partition=result.track_id,
        description=preview,
        metadata=metadata,
        tags={
            DATA_VERSION_TAG: result.data_version or "",
            CODE_VERSION_TAG: feature.version,
            **input_tags,
        },
    )


def failure_observation(feature: str, track_id: str, error: str) -> AssetObservation:
    """One failed pair: an observation tagged ``klio/status = failed``, with its error."""
    return AssetObservation(
        asset_key=feature,
        partition=track_id,
        metadata={STATUS_TAG: FAILED, "error": MetadataValue.text(error)},
        tags={STATUS_TAG: FAILED},
    )
