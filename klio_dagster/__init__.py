"""klio-dagster: Klio's event-driven audio pipelines on Dagster's asset graph.

The public API. Names are imported lazily, so that Beam workers, which need only
the Dagster-free core (:mod:`klio_dagster.core`), start without importing Dagster.

Sub-packages: ``core`` (features, audio, formats, per-track computation), ``storage``,
``planning`` (lineage, planner), ``executors`` (in-process, Beam), ``orchestration``
(the Dagster glue), ``events`` (messages, queues, sensors), ``cli`` and ``demo``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "FeatureRunConfig": "orchestration.assets",
    "audio_source_spec": "orchestration.assets",
    "build_feature_assets": "orchestration.assets",
    "build_features_job": "orchestration.assets",
    "FeatureLocation": "orchestration.factory",
    "build_feature_definitions": "orchestration.factory",
    "find_feature_location": "orchestration.factory",
    "tracks_partitions": "orchestration.partitions",
    "Tier": "tiers.base",
    "NativeTier": "tiers.native",
    "LedgerTier": "tiers.ledger",
    "tier_from_environment": "tiers",
    "FeatureExecutorResource": "orchestration.resources",
    "FeatureStoreResource": "orchestration.resources",
    "TrackSourcesResource": "orchestration.resources",
    "AudioDecodeError": "errors",
    "ConfigurationError": "errors",
    "FeatureGraphError": "errors",
    "InvalidMessage": "errors",
    "InvalidRequest": "errors",
    "InvalidSourceUri": "errors",
    "InvalidTrackId": "errors",
    "KlioError": "errors",
    "LocationError": "errors",
    "MissingInputError": "errors",
    "InputMismatchError": "errors",
    "PubSubUnavailable": "errors",
    "SourceNotAllowed": "errors",
    "StoreError": "errors",
    "TrackTooLong": "errors",
    "UnknownFormat": "errors",
    "PairResult": "core.execution",
    "TrackLimits": "core.execution",
    "TrackTask": "core.execution",
    "compute_track": "core.execution",
    "AUDIO": "core.features",
    "Audio": "core.audio",
    "Feature": "core.features",
    "FeatureGraph": "core.graph",
    "FeatureOutput": "core.features",
    "feature": "core.features",
    "multi_feature": "core.features",
    "FeatureOut": "core.features",
    "MultiFeature": "core.features",
    "Decode": "core.features",
    "OutputFormat": "core.formats",
    "BUILTIN_FORMATS": "core.formats",
    "as_frame": "core.formats",
    "new_figure": "core.plots",
    "figure_image": "core.plots",
    "waveform_figure": "core.plots",
    "spectrogram_figure": "core.plots",
    "mel_figure": "core.plots",
    "mfcc_figure": "core.plots",
    "chroma_figure": "core.plots",
    "mel_spectrogram_image": "core.plots",
    "decode_file": "core.audio",
    "mel_spectrogram_db": "core.audio",
    "onset_strength": "core.audio",
    "beat_track": "core.audio",
    "frame_rms": "core.audio",
    "rms_per_interval": "core.audio",
    "TRACK_ID_PATTERN": "core.tracks",
    "validate_track_id": "core.tracks",
    "InProcessExecutor": "executors.in_process",
    "FeatureDone": "events.outputs",
    "OutputEventsResource": "events.outputs",
    "run_queue_config": "events.priority",
    "build_top_down_sensor": "events.top_down",
    "PubSubSourceResource": "events.pubsub",
    "build_pubsub_sensor": "events.pubsub",
    "LocalQueueResource": "events.local_sensor",
    "build_local_queue_sensor": "events.local_sensor",
    "FeatureStore": "storage.stores",
    "GCSFeatureStore": "storage.stores",
    "LocalFeatureStore": "storage.stores",
    "open_store": "storage.stores",
    "SourcePolicy": "storage.sources",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from klio_dagster.core.audio import (
        Audio,
        beat_track,
        decode_file,
        frame_rms,
        mel_spectrogram_db,
        onset_strength,
        rms_per_interval,
    )
    from klio_dagster.core.execution import PairResult, TrackLimits, TrackTask, compute_track
    from klio_dagster.core.features import (
        AUDIO,
        Decode,
        Feature,
        FeatureOut,
        FeatureOutput,
        MultiFeature,
        feature,
        multi_feature,
    )
    from klio_dagster.core.formats import BUILTIN_FORMATS, OutputFormat, as_frame
    from klio_dagster.core.graph import FeatureGraph
    from klio_dagster.core.plots import (
        chroma_figure,
        figure_image,
        mel_figure,
        mel_spectrogram_image,
        mfcc_figure,
        new_figure,
        spectrogram_figure,
        waveform_figure,
    )
    from klio_dagster.core.tracks import TRACK_ID_PATTERN, validate_track_id
    from klio_dagster.errors import (
        AudioDecodeError,
        ConfigurationError,
        FeatureGraphError,
        InputMismatchError,
        InvalidMessage,
        InvalidRequest,
        InvalidSourceUri,
        InvalidTrackId,
        KlioError,
        LocationError,
        MissingInputError,
        PubSubUnavailable,
        SourceNotAllowed,
        StoreError,
        TrackTooLong,
        UnknownFormat,
    )
    from klio_dagster.events.local_sensor import LocalQueueResource, build_local_queue_sensor
    from klio_dagster.events.outputs import FeatureDone, OutputEventsResource
    from klio_dagster.events.priority import run_queue_config
    from klio_dagster.events.pubsub import PubSubSourceResource, build_pubsub_sensor
    from klio_dagster.events.top_down import build_top_down_sensor
    from klio_dagster.executors.in_process import InProcessExecutor
    from klio_dagster.orchestration.assets import (
        FeatureRunConfig,
        audio_source_spec,
        build_feature_assets,
        build_features_job,
    )
    from klio_dagster.orchestration.factory import FeatureLocation, build_feature_definitions, find_feature_location
    from klio_dagster.orchestration.partitions import tracks_partitions
    from klio_dagster.orchestration.resources import FeatureExecutorResource, FeatureStoreResource, TrackSourcesResource
    from klio_dagster.storage.sources import SourcePolicy
    from klio_dagster.storage.stores import FeatureStore, GCSFeatureStore, LocalFeatureStore, open_store
    from klio_dagster.tiers import tier_from_environment
    from klio_dagster.tiers.base import Tier
    from klio_dagster.tiers.ledger import LedgerTier
    from klio_dagster.tiers.native import NativeTier


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'klio_dagster' has no attribute {name!r}")
    return getattr(importlib.import_module(f"klio_dagster.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
