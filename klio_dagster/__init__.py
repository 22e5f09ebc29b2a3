"""klio-dagster: Klio's event-driven audio pipelines on Dagster's asset graph."""

from .assets import FeatureRunConfig, audio_source_spec, build_feature_assets, build_features_job
from .errors import AudioDecodeError, InvalidRequest, InvalidTrackId, KlioError, MissingInputError, StoreError
from .execution import InProcessExecutor, PairResult, TrackTask, compute_track
from .features import AUDIO, Audio, Feature, FeatureGraph, FeatureOutput, feature
from .resources import FeatureExecutorResource, FeatureStoreResource
from .storage import FeatureStore, GCSFeatureStore, LocalFeatureStore, open_store
from .tracks import TRACK_ID_PATTERN, tracks_partitions, validate_track_id

__all__ = [
    "AUDIO",
    "Audio",
    "AudioDecodeError",
    "Feature",
    "FeatureExecutorResource",
    "FeatureGraph",
    "FeatureOutput",
    "FeatureRunConfig",
    "FeatureStore",
    "FeatureStoreResource",
    "GCSFeatureStore",
    "InProcessExecutor",
    "InvalidRequest",
    "InvalidTrackId",
    "KlioError",
    "LocalFeatureStore",
    "MissingInputError",
    "PairResult",
    "StoreError",
    "TRACK_ID_PATTERN",
    "TrackTask",
    "audio_source_spec",
    "build_feature_assets",
    "build_features_job",
    "compute_track",
    "feature",
    "open_store",
    "tracks_partitions",
    "validate_track_id",
]
