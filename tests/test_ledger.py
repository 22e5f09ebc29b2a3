"""The ledger (the ledger tier's tables): bulk writes, latest-state semantics, indexed reads, shards.

Run on SQLite (the embedded case) and on a real Postgres server.
"""

from __future__ import annotations

import time
import uuid

import pytest

from klio_dagster.errors import ConfigurationError
from klio_dagster.ledger import Failed, Ledger, Recorded, Source, shard_key, shard_keys, shard_number, shard_of


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(f"l{uuid.uuid4().hex[:12]}")
    book = Ledger(url, shards=16)
    yield book
    book.close()


def recorded(feature: str, track: str, version: str = "1:aaaa", run: str = "run-1", **metadata) -> Recorded:
    return Recorded(feature, track, version, version.split(":")[0], f"/store/{feature}/{track}", run, 0.5, metadata)


@pytest.mark.integration
def test_register_returns_new_tracks_and_a_new_source_replaces_the_old(ledger):
    assert ledger.register({"a": Source("/m/a.wav"), "b": Source("/m/b.wav")}) == ["a", "b"]
    assert ledger.register({"b": Source("/m/b2.wav", from_event=True), "c": Source("/m/c.wav")}) == ["c"]
    assert ledger.known(["a", "b", "c", "zz"]) == {"a", "b", "c"}
    assert ledger.sources(["b", "zz"]) == {"b": Source("/m/b2.wav", from_event=True)}
    assert ledger.count_tracks() == 3


@pytest.mark.integration
def test_latest_success_failure_and_ping_live_side_by_side(ledger):
    ledger.register({"t": Source("/m/t.wav")})
    ledger.record([recorded("energy", "t", "1:aaaa", run="r1", bpm=120)])
    time.sleep(0.01)
    ledger.record_failures([Failed("energy", "t", "r2", "boom")])
    state = ledger.pair("energy", "t")
    assert state.failed_last and state.data_version == "1:aaaa" and state.run_id == "r1" and state.error == "boom"
    assert state.metadata == {"bpm": 120}
    time.sleep(0.01)
    ledger.record([recorded("energy", "t", "1:bbbb", run="r3")])
    state = ledger.pair("energy", "t")
    assert not state.failed_last and state.data_version == "1:bbbb" and state.failed_run_id == "r2"
    ledger.record_pings([("energy", "t", "skip"), ("beats", "t", "compute")])
    assert ledger.pair("energy", "t").ping_decision == "skip" and ledger.pair("energy", "t").data_version == "1:bbbb"
    assert ledger.pair("beats", "t").data_version is None and ledger.pair("beats", "t").ping_decision == "compute"
    assert ledger.data_versions("beats", ["t"]) == {}  # a ping records no output
    assert ledger.run_results("r3") == ([("energy", "t")], [])
    assert ledger.run_results("r2") == ([], [("energy", "t", "boom")])  # what that run did stays its outcome


@pytest.mark.integration
def test_reads_by_tracks_range_run_and_shard(ledger):
    tracks = [f"t{i:04d}" for i in range(300)]
    ledger.register({t: Source(f"/m/{t}.wav") for t in tracks})
    ledger.record([recorded("energy", t, run="r1") for t in tracks[:200]])
    ledger.record_failures([Failed("energy", t, "r1", "bad") for t in tracks[200:210]])
    assert len(ledger.data_versions("energy", tracks)) == 200
    assert set(ledger.data_versions_between("energy", "t0100", "t0149")) == set(tracks[100:150])
    computed, failed = ledger.run_results("r1")
    assert len(computed) == 200 and {t for _, t, _ in failed} == set(tracks[200:210])
    counts = ledger.shard_counts("energy", "1", range(16))
    assert sum(c["tracks"] for c in counts.values()) == 300
    assert sum(c["current"] for c in counts.values()) == 200 and sum(c["failed"] for c in counts.values()) == 10
    shard = shard_of(tracks[0], 16)
    in_shard = ledger.tracks_in_shards([shard])
    assert tracks[0] in in_shard and all(shard_of(t, 16) == shard for t in in_shard)
    assert ledger.recorded_by_run("energy", "r1", shard) == sorted(t for t in in_shard if t in tracks[:200])
    assert ledger.shard_counts("energy", "2", [shard])[shard]["current"] == 0  # another version is not current


@pytest.mark.integration
def test_track_pages_cover_the_catalogue_once_shard_by_shard(ledger):
    tracks = [f"t{i:05d}" for i in range(1_234)]
    ledger.register({t: Source("/m/x.wav") for t in reversed(tracks)})
    pages = list(ledger.track_pages(page_size=500))
    listed = [t for p in pages for t in p]
    assert sorted(listed) == tracks and len(listed) == len(tracks)
    assert listed == sorted(tracks, key=lambda t: (shard_of(t, 16), t))
    assert all(250 <= len(p) <= 500 for p in pages[:-1])
    ends = [shard_of(p[-1], 16) != shard_of(n[0], 16) for p, n in zip(pages, pages[1:])]
    assert all(ends)  # each page ends at a shard's end (16 shards of ~77 tracks)


@pytest.mark.integration
def test_pages_of_uneven_shards_hold_whole_shards_and_a_large_shard_alone(ledger):
    """Shard 3 holds 250 tracks (more than a page), shard 9 holds 90, the others 10 each; pages of 100."""
    sizes = {shard: 10 for shard in range(16)} | {3: 250, 9: 90}
    by_shard: dict[int, list[str]] = {s: [] for s in sizes}
    i = 0
    while any(len(by_shard[s]) < n for s, n in sizes.items()):
        track = f"u{i:06d}"
        if len(by_shard[shard := shard_of(track, 16)]) < sizes[shard]:
            by_shard[shard].append(track)
        i += 1
    ledger.register({t: Source("/m/x.wav") for tracks in by_shard.values() for t in tracks})
    pages = list(ledger.track_pages(page_size=100))
    listed = [t for p in pages for t in p]
    assert listed == [t for s in range(16) for t in sorted(by_shard[s])]  # every track once, shard by shard
    for page in pages:
        shards = {shard_of(t, 16) for t in page}
        assert shards <= set(range(page.first_shard, page.last_shard + 1))
        assert all(set(by_shard[s]) <= set(page) for s in shards)  # whole shards only
        assert len(page) <= 100 or shards == {3}
    assert [sorted(p) for p in pages if shard_of(p[0], 16) == 3] == [sorted(by_shard[3])]


@pytest.mark.integration
def test_a_ledger_opened_with_another_shard_count_is_refused(ledger):
    ledger.register({"t": Source("/m/t.wav")})
    with pytest.raises(ConfigurationError, match="registered with 16 shards, not 17"):
        Ledger(ledger.url, shards=17)


@pytest.mark.integration
@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite:////no/such/folder/ledger.sqlite"])
def test_unusable_ledger_urls_say_what_to_do(url):
    with pytest.raises(ConfigurationError, match="sqlite|cannot be opened"):
        Ledger(url, shards=4)


@pytest.mark.unit
def test_shards_are_stable_and_their_keys_sort_as_numbers():
    assert shard_of("spotify:track:1", 4096) == shard_of("spotify:track:1", 4096)
    assert shard_of("abc", 4096) == 1369  # BLAKE2b: the same in every process and release
    keys = shard_keys(1000)
    assert keys[0] == "shard-000" and keys[-1] == "shard-999" and keys == sorted(keys)
    assert shard_number(shard_key(42, 1000), 1000) == 42
    for bad in ("shard-1000", "track-1", "shard-", "shard-x"):
        with pytest.raises(ValueError, match="not a shard partition key"):
            shard_number(bad, 1000)
    counts = [0] * 64
    for i in range(64_000):
        counts[shard_of(f"track-{i}", 64)] += 1
    assert min(counts) > 800 and max(counts) < 1200  # spread evenly


@pytest.mark.integration
def test_a_page_reads_its_lineage_by_shard_and_only_its_own_tracks(ledger):
    tracks = [f"t{i:04d}" for i in range(400)]
    ledger.register({t: Source("/m/x.wav") for t in tracks})
    ledger.record([recorded("energy", t) for t in tracks[::2]])
    pages = list(ledger.track_pages(page_size=100))
    for page in pages:
        assert all(page.first_shard <= shard_of(t, 16) <= page.last_shard for t in page)
        assert ledger.data_versions_in_page(["energy"], page) == {"energy": ledger.data_versions("energy", list(page))}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("variables", "error"),
    [({"KLIO_TIER": "shards"}, "use 'native'"), ({"KLIO_TIER": "ledger", "KLIO_LEDGER_SHARDS": "0"}, "positive whole"),
     ({"KLIO_TIER": "ledger", "KLIO_LEDGER_SHARDS": "many"}, "positive whole")],
)
def test_a_tier_misconfigured_in_the_environment_says_what_to_set(monkeypatch, variables, error):
    from klio_dagster.tiers import LedgerTier, NativeTier, tier_from_environment

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=error):
        tier_from_environment()
    monkeypatch.setenv("KLIO_TIER", "Ledger")
    monkeypatch.setenv("KLIO_LEDGER_SHARDS", "64")
    assert tier_from_environment() == LedgerTier(shards=64)
    monkeypatch.delenv("KLIO_TIER")
    assert isinstance(tier_from_environment(), NativeTier)
