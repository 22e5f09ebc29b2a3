"""klio-dagster: Klio's event-driven audio pipelines on Dagster's asset graph.

Names are imported lazily so that Beam workers, which only need the
feature and execution modules, start without importing Dagster.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "FeatureRunConfig": "assets",
    "audio_source_spec": "assets",
    "build_feature_assets": "assets",
    "build_features_job": "assets",
    "AudioDecodeError": "errors",
    "InvalidRequest": "errors",
    "InvalidTrackId": "errors",
    "KlioError": "errors",
    "MissingInputError": "errors",
    "StoreError": "errors",
    "InProcessExecutor": "execution",
    "PairResult": "execution",
    "TrackTask": "execution",
    "compute_track": "execution",
    "AUDIO": "features",
    "Audio": "features",
    "Feature": "features",
    "FeatureGraph": "features",
    "FeatureOutput": "features",
    "feature": "features",
    "FeatureDone": "outputs",
    "OutputEventsResource": "outputs",
    "run_queue_config": "priority",
    "build_top_down_sensor": "propagation",
    "PubSubSourceResource": "pubsub",
    "build_pubsub_sensor": "pubsub",
    "FeatureExecutorResource": "resources",
    "FeatureStoreResource": "resources",
    "LocalQueueResource": "sensors",
    "build_local_queue_sensor": "sensors",
    "FeatureStore": "storage",
    "GCSFeatureStore": "storage",
    "LocalFeatureStore": "storage",
    "open_store": "storage",
    "TRACK_ID_PATTERN": "tracks",
    "tracks_partitions": "tracks",
    "validate_track_id": "tracks",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .assets import FeatureRunConfig, audio_source_spec, build_feature_assets, build_features_job
    from .errors import AudioDecodeError, InvalidRequest, InvalidTrackId, KlioError, MissingInputError, StoreError
    from .execution import InProcessExecutor, PairResult, TrackTask, compute_track
    from .features import AUDIO, Audio, Feature, FeatureGraph, FeatureOutput, feature
    from .outputs import FeatureDone, OutputEventsResource
    from .priority import run_queue_config
    from .propagation import build_top_down_sensor
    from .pubsub import PubSubSourceResource, build_pubsub_sensor
    from .resources import FeatureExecutorResource, FeatureStoreResource
    from .sensors import LocalQueueResource, build_local_queue_sensor
    from .storage import FeatureStore, GCSFeatureStore, LocalFeatureStore, open_store
    from .tracks import TRACK_ID_PATTERN, tracks_partitions, validate_track_id


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'klio_dagster' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return __all__
