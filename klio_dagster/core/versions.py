"""Data versions of feature outputs: the code version and a digest of the bytes.

Dagster indexes the data version tag per partition, so the planner reads
which code version made each output with one query per feature.
"""

from __future__ import annotations


def make_data_version(code_version: str, digest: str) -> str:
    return f"{code_version}:{digest}"


def code_version_of(data_version: str) -> str:
    return data_version.rpartition(":")[0]
