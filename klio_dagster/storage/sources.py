"""Track source files: which locations events may name, and opening one safely.

Sources come from two places. A path a user typed (``klio-dagster ingest``)
is trusted as typed. A URI in an event (local queue, Pub/Sub) comes from
whoever can publish, so it is admitted only under the allowed roots of a
:class:`SourcePolicy`, resolved after symlinks and ``..``, and only as a
regular file of bounded size. Whatever the origin, a source is opened
without following a final symlink and without blocking (a FIFO or device
is refused, never read), and is never read past ``max_bytes``.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from klio_dagster.errors import AudioDecodeError, InvalidSourceUri, SourceNotAllowed

if TYPE_CHECKING:
    from google.cloud.storage import Client

#: Larger source files are refused (a 3-hour 48 kHz stereo 24-bit WAV is 3.1 GB).
DEFAULT_MAX_SOURCE_BYTES = 4 * 1024**3


def normalize_source_uri(uri: str) -> str:
    """Absolute form of a source location: ``gs://...`` as is, a local path made absolute."""
    if uri.startswith("gs://"):
        return uri
    if "://" in uri and not uri.startswith("file://"):
        raise InvalidSourceUri(f"unsupported source URI {uri!r}: use a file path, file:// or gs://")
    return str(Path(uri.removeprefix("file://")).expanduser().absolute())


def _gcs_parts(uri: str) -> tuple[str, str]:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return bucket, name


@dataclass(frozen=True)
class SourcePolicy:
    """Where events may point a track's source.

    Parameters
    ----------
    allowed_roots : sequence of str
        Local folders and ``gs://bucket`` or ``gs://bucket/prefix`` locations. A local
        source is admitted if its real path (symlinks and ``..`` resolved) lies inside a
        root's real path; a GCS source if it is in a listed bucket under the prefix.
        Empty: events may name no source at all.
    max_bytes : int
        Largest source file read, in bytes.
    """

    allowed_roots: tuple[str, ...] = ()
    max_bytes: int = DEFAULT_MAX_SOURCE_BYTES

    @classmethod
    def from_setting(cls, roots: str | Sequence[str], max_bytes: int = DEFAULT_MAX_SOURCE_BYTES) -> SourcePolicy:
        """A policy from a comma-separated list (``KLIO_ALLOWED_SOURCES``) or a sequence of roots."""
        items = roots.split(",") if isinstance(roots, str) else roots
        resolved = []
        for root in (r.strip() for r in items):
            if not root:
                continue
            if root.startswith("gs://"):
                bucket, prefix = _gcs_parts(root)
                if not bucket:
                    raise InvalidSourceUri(f"allowed source root {root!r} has no bucket: use gs://bucket[/prefix]")
                resolved.append(f"gs://{bucket}/{prefix.strip('/')}".rstrip("/"))
            else:
                resolved.append(os.path.realpath(normalize_source_uri(root)))
        return cls(tuple(resolved), max_bytes)

    def _root_of(self, uri: str) -> str | None:
        if uri.startswith("gs://"):
            bucket, name = _gcs_parts(uri)
            for root in (r for r in self.allowed_roots if r.startswith("gs://")):
                root_bucket, prefix = _gcs_parts(root)
                if bucket == root_bucket and (not prefix or name.startswith(f"{prefix}/")):
                    return root
            return None
        return next((r for r in self.allowed_roots if not r.startswith("gs://") and Path(uri).is_relative_to(r)), None)

    def admit(self, uri: str) -> str:
        """The location an event's ``uri`` names, if it is allowed; else :class:`SourceNotAllowed` with the reason.

        Local sources are returned as their real path (so a symlink swapped later
        cannot redirect the read), after checking that it is a regular file no
        larger than ``max_bytes``. GCS objects are checked by name here and by
        size when they are read.
        """
        if "\x00" in uri:
            raise SourceNotAllowed(f"source {uri!r} contains a NUL byte")
        location = normalize_source_uri(uri)
        roots = ", ".join(self.allowed_roots) or "none configured"
        if location.startswith("gs://"):
            bucket, name = _gcs_parts(location)
            if not name or any(part in ("", ".", "..") for part in name.split("/")):
                raise SourceNotAllowed(f"source {uri!r} is not a plain object name (empty, '.' or '..' segments)")
            if self._root_of(location) is None:
                raise SourceNotAllowed(f"source {uri!r} is outside the allowed source roots ({roots}): see KLIO_ALLOWED_SOURCES")
            return location
        real = os.path.realpath(location)
        if self._root_of(real) is None:
            shown = f" (resolves to {real})" if real != location else ""
            raise SourceNotAllowed(
                f"source {uri!r}{shown} is outside the allowed source roots ({roots}): see KLIO_ALLOWED_SOURCES"
            )
        _check_file(real, os.stat(real) if os.path.lexists(real) else None, self.max_bytes, uri)
        return real


def _check_file(path: str, info: os.stat_result | None, max_bytes: int, shown: str) -> None:
    if info is None:
        raise SourceNotAllowed(f"source file {shown} does not exist")
    if not stat.S_ISREG(info.st_mode):
        raise SourceNotAllowed(f"source {shown} is not a regular file (a directory, device, FIFO or socket)")
    if info.st_size > max_bytes:
        raise SourceNotAllowed(f"source {shown} is {info.st_size} bytes, more than the {max_bytes} allowed")


@contextmanager
def open_source(
    uri: str,
    gcs_client: Callable[[], Client],
    *,
    max_bytes: int = DEFAULT_MAX_SOURCE_BYTES,
    policy: SourcePolicy | None = None,
) -> Iterator[IO[bytes]]:
    """A seekable binary file of a source, closed on exit.

    A local file is opened in place (no copy in memory). A GCS object is
    downloaded to an anonymous temporary file. ``policy``, for sources that
    came from events, is checked again at read time.

    Raises
    ------
    AudioDecodeError
        If the source does not exist.
    SourceNotAllowed
        If it is outside ``policy``'s roots, not a regular file, or larger than ``max_bytes``.
    """
    if policy is not None:
        uri = policy.admit(uri)
    if uri.startswith("gs://"):
        with _downloaded(uri, gcs_client, max_bytes) as fh:
            yield fh
        return
    path = uri.removeprefix("file://")
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer; O_NOFOLLOW: a final
        # symlink is refused (event sources were recorded as real paths).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if policy else 0))
    except FileNotFoundError as exc:
        raise AudioDecodeError(f"source file {uri} does not exist") from exc
    except OSError as exc:
        raise SourceNotAllowed(f"source {uri} cannot be opened: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise AudioDecodeError(f"source {uri} is a directory, not an audio file")
        _check_file(path, info, max_bytes, uri)
        yield fh


@contextmanager
def _downloaded(uri: str, gcs_client: Callable[[], Client], max_bytes: int) -> Iterator[IO[bytes]]:
    bucket, name = _gcs_parts(uri)
    blob = gcs_client().bucket(bucket).get_blob(name)
    if blob is None:
        raise AudioDecodeError(f"source file {uri} does not exist")
    if blob.size is not None and blob.size > max_bytes:
        raise SourceNotAllowed(f"source {uri} is {blob.size} bytes, more than the {max_bytes} allowed")
    with tempfile.TemporaryFile(prefix="klio-source-") as fh:
        blob.download_to_file(fh, if_generation_match=blob.generation)
        if fh.tell() > max_bytes:
            raise SourceNotAllowed(f"source {uri} is {fh.tell()} bytes, more than the {max_bytes} allowed")
        fh.seek(0)
        yield fh
