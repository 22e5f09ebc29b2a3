"""Features that report on the process computing them (importable by Beam workers via PYTHONPATH)."""

from threadpoolctl import threadpool_info

from klio_dagster import Audio, FeatureGraph, FeatureOutput, feature


@feature(code_version="1", output="json")
def blas_threads(audio: Audio) -> FeatureOutput:
    """The BLAS thread count of the worker that computed this track."""
    threads = max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
    return FeatureOutput({"threads": threads}, {"blas_threads": threads})


probe_graph = FeatureGraph([blas_threads])
