"""Features that report on the process computing them (importable by Beam workers via PYTHONPATH)."""

import os
import signal

from threadpoolctl import threadpool_info

from klio_dagster import Audio, FeatureGraph, FeatureOutput, feature


@feature(code_version="1", output="json")
def blas_threads(audio: Audio) -> FeatureOutput:
    """The BLAS thread count of the worker that computed this track."""
    threads = max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
    return FeatureOutput({"threads": threads}, {"blas_threads": threads})


probe_graph = FeatureGraph([blas_threads])


@feature(code_version="1", output="json")
def dies_on_crash_tracks(audio: Audio, track_id: str) -> dict:
    """Kills the process computing it for tracks whose ID contains ``crash`` (a native crash, the OOM killer)."""
    if "crash" in track_id:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"seconds": audio.duration_s}


crash_graph = FeatureGraph([dies_on_crash_tracks])
