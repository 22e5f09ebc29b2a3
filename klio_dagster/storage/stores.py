"""Feature stores: where each (feature, track) output lives.

One interface, two implementations. Every object is addressed by a relative
name such as ``"beat_tracking/track-01.parquet"``; writes are atomic (readers
see the old object or the whole new one, never a partial one) and existence
is checked per folder with one listing, never one request per track.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO, TYPE_CHECKING, ContextManager

from klio_dagster.errors import StoreError

if TYPE_CHECKING:
    from google.cloud.storage import Client

    from klio_dagster.storage.sources import SourcePolicy


def object_name(feature: str, track_id: str, extension: str) -> str:
    """The predictable relative name of one (feature, track) output."""
    return f"{feature}/{track_id}.{extension}"


#: Executors' temporary results: ``_runs/{driver process token}-{uuid}/``, so that a folder whose
#: driver died can be found and removed (``orchestration.run_health``).
RUNS_FOLDER = "_runs"


class FeatureStore(ABC):
    """Byte storage for feature outputs, addressed by relative names."""

    #: Concurrent requests worth making for many small objects (network stores: many).
    io_threads: int = 1

    @property
    @abstractmethod
    def root_uri(self) -> str:
        """URI of the store's root (a directory path or ``gs://bucket/prefix``)."""

    def uri(self, name: str) -> str:
        """Absolute URI of the object ``name``."""
        return f"{self.root_uri.rstrip('/')}/{name}"

    @abstractmethod
    def write_bytes(self, name: str, data: bytes) -> str:
        """Write ``data`` atomically under ``name``; return its URI."""

    @abstractmethod
    def read_bytes(self, name: str) -> bytes:
        """Read the object ``name``; raise ``FileNotFoundError`` if absent."""

    @abstractmethod
    def list_names(self, folder: str) -> set[str]:
        """Names (relative to ``folder``) of all objects directly in ``folder``."""

    @abstractmethod
    def list_folders(self, folder: str) -> set[str]:
        """Names (relative to ``folder``) of the folders directly in ``folder``."""

    @abstractmethod
    def delete_folder(self, folder: str) -> None:
        """Delete every object under ``folder`` (no error if there is none)."""

    def gcs_client(self) -> Client:
        """A GCS client for ``gs://`` sources (the environment's default credentials)."""
        from dagster_gcp import GCSResource

        return GCSResource().get_client()

    def open_source(self, uri: str, *, max_bytes: int, policy: SourcePolicy | None = None) -> ContextManager[IO[bytes]]:
        """Open a source file by URI (local path, ``file://`` or ``gs://``); see :func:`~klio_dagster.storage.sources.open_source`."""
        from klio_dagster.storage.sources import open_source

        return open_source(uri, self.gcs_client, max_bytes=max_bytes, policy=policy)

    def existing_tracks(self, feature: str, extension: str) -> set[str]:
        """Track IDs that have a stored ``feature`` output, from one listing."""
        suffix = f".{extension}"
        return {n[: -len(suffix)] for n in self.list_names(feature) if n.endswith(suffix)}


class LocalFeatureStore(FeatureStore):
    """A directory on a local (or mounted) file system: the embedded default."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(os.path.normpath(Path(root).expanduser().absolute()))

    @property
    def root_uri(self) -> str:
        return str(self.root)

    def _path(self, name: str) -> Path:
        # normpath folds ".." without a system call per component (this runs once per object).
        path = os.path.normpath(os.path.join(self.root, name))
        if not path.startswith(f"{self.root}{os.sep}"):
            raise StoreError(f"object name {name!r} escapes the store root {self.root}")
        return Path(path)

    def write_bytes(self, name: str, data: bytes) -> str:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())  # durable before the rename publishes it (and before it is recorded)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(path)

    def read_bytes(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def list_names(self, folder: str) -> set[str]:
        try:
            with os.scandir(self._path(folder)) as entries:
                return {e.name for e in entries if not e.name.startswith(".") and e.is_file()}
        except FileNotFoundError:
            return set()

    def list_folders(self, folder: str) -> set[str]:
        try:
            with os.scandir(self._path(folder)) as entries:
                return {e.name for e in entries if not e.name.startswith(".") and e.is_dir()}
        except FileNotFoundError:
            return set()

    def delete_folder(self, folder: str) -> None:
        shutil.rmtree(self._path(folder), ignore_errors=True)


class GCSFeatureStore(FeatureStore):
    """A bucket prefix on Google Cloud Storage, through dagster-gcp's ``GCSResource``.

    A GCS upload is atomic: the object appears under its name only once the
    upload has completed, so no temporary name is needed. The client is made
    lazily from the project name so that the store pickles to Beam workers.
    """

    io_threads = 16  # each small object is one HTTP round trip

    def __init__(self, bucket: str, prefix: str = "", project: str | None = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.project = project
        self._client: Client | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None}

    @property
    def client(self) -> Client:
        if self._client is None:
            from dagster_gcp import GCSResource

            self._client = GCSResource(project=self.project).get_client()
        return self._client

    def gcs_client(self) -> Client:
        return self.client

    @property
    def root_uri(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def write_bytes(self, name: str, data: bytes) -> str:
        self.client.bucket(self.bucket).blob(self._key(name)).upload_from_string(data)
        return self.uri(name)

    def read_bytes(self, name: str) -> bytes:
        from google.api_core.exceptions import NotFound

        try:
            return self.client.bucket(self.bucket).blob(self._key(name)).download_as_bytes()
        except NotFound as exc:
            raise FileNotFoundError(self.uri(name)) from exc

    def list_names(self, folder: str) -> set[str]:
        prefix = self._key(folder).rstrip("/") + "/"
        blobs = self.client.list_blobs(self.bucket, prefix=prefix, delimiter="/")
        return {blob.name[len(prefix) :] for blob in blobs}

    def list_folders(self, folder: str) -> set[str]:
        prefix = self._key(folder).rstrip("/") + "/"
        blobs = self.client.list_blobs(self.bucket, prefix=prefix, delimiter="/")
        for _ in blobs.pages:  # prefixes are filled in as pages are read
            pass
        return {p[len(prefix) :].rstrip("/") for p in blobs.prefixes}

    def delete_folder(self, folder: str) -> None:
        prefix = self._key(folder).rstrip("/") + "/"
        for blob in self.client.list_blobs(self.bucket, prefix=prefix):
            blob.delete()


def open_store(uri: str, gcs_project: str | None = None) -> FeatureStore:
    """The store for ``uri``: ``gs://bucket/prefix`` or a local directory path."""
    if not uri:
        raise StoreError("empty feature store URI: set KLIO_STORE to a directory or gs://bucket/prefix")
    if uri.startswith("gs://"):
        bucket, _, prefix = uri[len("gs://") :].partition("/")
        if not bucket:
            raise StoreError(f"feature store URI {uri!r} has no bucket: use gs://bucket/prefix")
        return GCSFeatureStore(bucket, prefix, gcs_project)
    if "://" in uri and not uri.startswith("file://"):
        raise StoreError(f"unsupported feature store URI {uri!r}: use a directory path or gs://bucket/prefix")
    return LocalFeatureStore(uri.removeprefix("file://"))
