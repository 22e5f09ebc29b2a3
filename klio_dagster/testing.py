"""Testing features without Dagster: compute a graph on audio held in memory.

A feature is a plain function, so its own unit tests call it; these helpers
run it as the product does (decoding, parameters, multi-output and ephemeral
features, schemas, formats) on a track made of samples in a temporary store::

    values = compute_on_audio(FeatureGraph([my_feature]), samples, 22_050)
    assert values["my_feature"].shape == ...
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from klio_dagster.core.audio import encode_float_wav
from klio_dagster.core.execution import TrackTask, compute_track
from klio_dagster.core.graph import FeatureGraph
from klio_dagster.errors import KlioError
from klio_dagster.storage.registry import record_sources
from klio_dagster.storage.stores import LocalFeatureStore


class FeatureFailed(KlioError):
    """A feature failed in :func:`compute_on_audio`; the message holds each failure."""


def compute_on_audio(
    graph: FeatureGraph,
    samples: np.ndarray,
    sample_rate: int,
    features: Iterable[str] | None = None,
    *,
    track_id: str = "test-track",
) -> dict[str, Any]:
    """Compute ``features`` (default: all of ``graph``'s stored features) for one track of ``samples``.

    Parameters
    ----------
    graph : FeatureGraph
    samples : np.ndarray, shape=(n,) or (channels, n)
        The track, float in [-1, 1]; stored as a 32-bit float WAV, so decoding is exact.
    sample_rate : int > 0
        Of ``samples``, in Hz.
    features : iterable of str, optional
        Stored features to compute, with what they need.

    Returns
    -------
    dict
        Each computed feature's value as its readers receive it (decoded from the stored bytes).

    Raises
    ------
    FeatureFailed
        If any feature failed, with every error.
    """
    names = graph.with_ancestors(features if features is not None else graph.names)
    with tempfile.TemporaryDirectory(prefix="klio-test-") as tmp:
        source = Path(tmp, f"{track_id}.wav")
        source.write_bytes(encode_float_wav(np.asarray(samples, dtype=np.float32), sample_rate))
        store = LocalFeatureStore(str(Path(tmp, "store")))
        record_sources(store, {track_id: str(source)})
        results = compute_track(TrackTask(track_id, tuple(names)), graph, store)
        failures = [f"{r.feature}: {r.error}" for r in results if not r.ok]
        if failures:
            raise FeatureFailed("; ".join(failures))
        return {r.feature: graph[r.feature].output_format.decode(store.read_bytes(graph[r.feature].object_name(track_id)))
                for r in results}
