"""Reading a track's registered source file from a path or URI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from klio_dagster.errors import AudioDecodeError, InvalidSourceUri

if TYPE_CHECKING:
    from google.cloud.storage import Client


def normalize_source_uri(uri: str) -> str:
    """Absolute form of a source location: ``gs://...`` as is, a local path made absolute."""
    if uri.startswith("gs://"):
        return uri
    if "://" in uri and not uri.startswith("file://"):
        raise InvalidSourceUri(f"unsupported source URI {uri!r}: use a file path, file:// or gs://")
    return str(Path(uri.removeprefix("file://")).expanduser().absolute())


def read_source(uri: str, gcs_client: Callable[[], Client]) -> bytes:
    """The bytes of a source file; ``AudioDecodeError`` if it is missing.

    ``gcs_client`` makes the client for ``gs://`` URIs (called only for them).
    """
    if uri.startswith("gs://"):
        from google.api_core.exceptions import NotFound

        bucket, _, key = uri[len("gs://") :].partition("/")
        try:
            return gcs_client().bucket(bucket).blob(key).download_as_bytes()
        except NotFound as exc:
            raise AudioDecodeError(f"source file {uri} does not exist") from exc
    try:
        return Path(uri).read_bytes()
    except FileNotFoundError as exc:
        raise AudioDecodeError(f"source file {uri} does not exist") from exc
    except IsADirectoryError as exc:
        raise AudioDecodeError(f"source {uri} is a directory, not an audio file") from exc
