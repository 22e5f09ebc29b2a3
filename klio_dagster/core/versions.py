"""Data versions of feature outputs: code version, content digest and the inputs they were made from.

A data version reads ``"{code_version}:{digest}"``, followed by ``"~{mark}.{mark}..."``
when the feature reads other features: one short hash of each input's data
version, in the order of the sorted input names. Dagster indexes the data
version tag per partition, so one query per feature tells the planner which
code version made each output, which bytes it holds (readers check them) and
whether it was made from its parents' current outputs: the same answer
Dagster's staleness gives from the input data versions recorded with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

_INPUTS = "~"
_MARK_LENGTH = 8


def content_digest(data: bytes) -> str:
    """The digest of an output's bytes kept in its data version (16 hex digits of SHA-1)."""
    return hashlib.sha1(data).hexdigest()[:16]


def input_mark(data_version: str) -> str:
    """A short hash of an input's data version."""
    return hashlib.sha1(data_version.encode()).hexdigest()[:_MARK_LENGTH]


def make_data_version(code_version: str, digest: str, inputs: Mapping[str, str] | None = None) -> str:
    """The data version of an output with ``digest``, made by ``code_version`` from ``inputs`` (name: data version)."""
    version = f"{code_version}:{digest}"
    if inputs:
        version += _INPUTS + joined_marks(input_mark(inputs[name]) for name in sorted(inputs))
    return version


def _tail(data_version: str) -> str:
    return data_version.rpartition(":")[2]


def code_version_of(data_version: str) -> str:
    return data_version.rpartition(":")[0]


def digest_of(data_version: str) -> str:
    return _tail(data_version).partition(_INPUTS)[0]


def code_version_and_marks(data_version: str) -> tuple[str, str]:
    """The code version an output was made by and its inputs' marks as recorded, joined (empty: none recorded)."""
    code_version, _, tail = data_version.rpartition(":")
    return code_version, tail.partition(_INPUTS)[2]


def joined_marks(marks: Iterable[str]) -> str:
    """Input marks joined as a data version records them (see :func:`code_version_and_marks`)."""
    return ".".join(marks)


def input_marks_of(data_version: str) -> tuple[str, ...]:
    """The marks of the inputs an output was made from, in sorted input-name order (empty: none recorded)."""
    marks = _tail(data_version).partition(_INPUTS)[2]
    return tuple(marks.split(".")) if marks else ()
