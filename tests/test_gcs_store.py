"""The GCS feature store through dagster-gcp's GCSResource, against a real local GCS emulator."""

from __future__ import annotations

import pytest
from servers import gcs_emulator as running_gcs_emulator

from examples.reference_graph import reference_graph as graph
from klio_dagster import GCSFeatureStore, TrackTask, compute_track, open_store
from klio_dagster.storage.registry import record_sources, tracks_with_sources

pytestmark = [pytest.mark.integration, pytest.mark.gcs]
BUCKET = "klio-test"


@pytest.fixture(scope="module")
def gcs_emulator():
    with running_gcs_emulator(BUCKET):
        yield


@pytest.fixture
def store(gcs_emulator, request) -> GCSFeatureStore:
    s = open_store(f"gs://{BUCKET}/{request.node.name}", gcs_project="test")
    assert isinstance(s, GCSFeatureStore)
    return s


def test_write_read_list_delete(store):
    uri = store.write_bytes("energy/t1.parquet", b"abc")
    assert uri == f"gs://{BUCKET}/test_write_read_list_delete/energy/t1.parquet"
    store.write_bytes("energy/t2.parquet", b"def")
    store.write_bytes("energy/nested/t3.parquet", b"x")
    assert store.read_bytes("energy/t1.parquet") == b"abc"
    assert store.existing_tracks("energy", "parquet") == {"t1", "t2"}
    with pytest.raises(FileNotFoundError):
        store.read_bytes("energy/absent.parquet")
    store.delete_folder("energy")
    assert store.list_names("energy") == set()


def test_existence_is_one_listing_for_many_tracks(store):
    record_sources(store, {f"track-{i:04d}": f"/audio/{i}.wav" for i in range(300)})
    assert len(tracks_with_sources(store)) == 300


def test_pipeline_reads_gs_sources_and_writes_features(store, catalogue):
    track = catalogue[1]
    store.write_bytes(f"sources/{track.path.name}", track.path.read_bytes())
    record_sources(store, {track.track_id: store.uri(f"sources/{track.path.name}")})
    results = compute_track(TrackTask(track.track_id, ("downsample", "beat_tracking")), graph, store)
    assert all(r.ok for r in results), [r.error for r in results]
    assert results[1].uri.startswith(f"gs://{BUCKET}/")
    assert store.existing_tracks("beat_tracking", "parquet") == {track.track_id}


def test_missing_gs_source_is_a_clear_error(store):
    record_sources(store, {"ghost": f"gs://{BUCKET}/nowhere/ghost.wav"})
    (result,) = compute_track(TrackTask("ghost", ("downsample",)), graph, store)
    assert "does not exist" in result.error
