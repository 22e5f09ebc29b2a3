"""Features that report on the process computing them (importable by Beam workers via PYTHONPATH)."""

import os
import signal

import pandas as pd
import pandera.pandas as pa
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


@feature(code_version="1", output="parquet", schema=pa.DataFrameSchema({"seconds": pa.Column(float, pa.Check.gt(0))}))
def seconds(audio: Audio, track_id: str) -> pd.DataFrame:
    """The track's duration, negated for tracks whose ID contains ``neg`` (an output its schema rejects)."""
    return pd.DataFrame({"seconds": [-audio.duration_s if "neg" in track_id else audio.duration_s]})


schema_graph = FeatureGraph([seconds])


@feature(code_version="1", output="json")
def worker_process(audio: Audio, track_id: str) -> dict:
    """The process that computed this track and its ancestors; tracks whose ID contains ``slow`` take a minute."""
    import time

    import psutil

    if "slow" in track_id:
        time.sleep(60)
    return {"pid": os.getpid(), "ancestors": [p.pid for p in psutil.Process().parents()]}


process_graph = FeatureGraph([worker_process])
