"""Shared fixtures: a generated catalogue, an isolated instance/store/queue, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))
# A suite started in the background (`&` in a script, nohup) inherits SIGINT ignored, and so would
# every process it starts: `dagster dev` then ignores SIGTERM as well (each stop waited out its 30 s
# grace), and a run process told to stop with SIGINT never stopped (104 s). Handled here, SIGINT is
# back to its default in every child.
signal.signal(signal.SIGINT, signal.default_int_handler)

from klio_dagster.cli import main  # noqa: E402
from klio_dagster.demo.catalogue import DemoTrack, write_catalogue  # noqa: E402
from klio_dagster.orchestration.instance import instance_config  # noqa: E402
from klio_dagster.orchestration.postgres import POSTGRES_URL_VARIABLE, LocalPostgres, postgres_binaries  # noqa: E402

LAYERS = ("unit", "sensor", "integration", "e2e")


def pytest_collection_modifyitems(config, items):
    """Every test belongs to exactly one layer of the pyramid, so that each layer runs alone (``-m unit``)."""
    for item in items:
        layers = sorted({m.name for m in item.iter_markers() if m.name in LAYERS})
        if len(layers) != 1:
            raise pytest.UsageError(f"{item.nodeid} must have exactly one of the markers {LAYERS}, has {layers}")


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory) -> list[DemoTrack]:
    """Six 6-second tracks: click, music, speech, twice; WAV, FLAC, OGG, MP3 mixed."""
    return write_catalogue(tmp_path_factory.mktemp("catalogue"), n_tracks=6, duration_s=6.0, prefix="t")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """One real Postgres server for the session (a user cluster on a free loopback port).

    Its folder is outside pytest's (root-only) temporary folder: as root, the server runs as ``postgres``.
    """
    if postgres_binaries() is None:
        pytest.skip("POSTGRES NOT FOUND: install the system package (`make postgres` does it as root)")
    folder = Path(tempfile.mkdtemp(prefix="klio-postgres-"))
    server = LocalPostgres(folder).start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def pytest_generate_tests(metafunc):
    """A module with ``INSTANCE_STORAGES = ("sqlite", "postgres")`` runs each instance test once per storage,
    and one with ``TIERS = ("native", "ledger")`` once per tier."""
    storages = getattr(metafunc.module, "INSTANCE_STORAGES", None)
    if storages and "instance_storage" in metafunc.fixturenames:
        metafunc.parametrize("instance_storage", storages, indirect=True)
    tiers = getattr(metafunc.module, "TIERS", None)
    if tiers and "tier" in metafunc.fixturenames:
        metafunc.parametrize("tier", tiers, indirect=True)


@pytest.fixture
def instance_storage(request) -> str:
    """The Dagster instance's storage: ``"sqlite"`` unless the module asks for more (``INSTANCE_STORAGES``)."""
    return getattr(request, "param", "sqlite")


#: Ledger-tier tests use few shards, so that several tracks share one.
TEST_SHARDS = 4


@pytest.fixture
def tier(request) -> str:
    """The tier (``KLIO_TIER``): ``"native"`` unless the module asks for more (``TIERS``)."""
    return getattr(request, "param", "native")


@pytest.fixture
def klio_env(tmp_path, tmp_path_factory, monkeypatch, request, instance_storage, tier) -> Path:
    """A fresh Dagster instance, feature store and queue for one test; events may name sources in any test folder.

    The ledger tier keeps its ledger in the instance's database (Postgres) or beside it (SQLite).
    Code locations are imported again for each test, since the tier is read when they are defined.
    """
    monkeypatch.setenv("KLIO_TIER", tier)
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")  # as commands set it: batches on Postgres
    monkeypatch.setenv("KLIO_LEDGER_SHARDS", str(TEST_SHARDS))
    monkeypatch.delenv("KLIO_LEDGER_URL", raising=False)
    for module in [m for m in sys.modules if m == "definitions" or m.startswith(("definitions.", "examples.harmony"))]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setenv("KLIO_ALLOWED_SOURCES", str(tmp_path_factory.getbasetemp()))
    for name, sub in (("DAGSTER_HOME", "home"), ("KLIO_STORE", "store"), ("KLIO_QUEUE", "queue"), ("KLIO_DATA", "data")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(name, str(tmp_path / sub))
    postgres = instance_storage == "postgres"
    if postgres:
        server = request.getfixturevalue("postgres_server")
        monkeypatch.setenv(POSTGRES_URL_VARIABLE, server.create_database(f"t{uuid.uuid4().hex[:12]}"))
    else:
        monkeypatch.delenv(POSTGRES_URL_VARIABLE, raising=False)
    (tmp_path / "home" / "dagster.yaml").write_text(instance_config(postgres))
    return tmp_path


CliResult = tuple[int, object]


@pytest.fixture
def cli(klio_env, capsys) -> Callable[..., CliResult]:
    """Run ``klio-dagster ARGS --json`` in-process; return (exit code, parsed JSON or stderr)."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            code = main([*args, "--json"])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        out, err = capsys.readouterr()
        lines = [line for line in out.splitlines() if line.startswith(("{", "["))]
        return code, (json.loads(lines[-1]) if lines else err)

    return run


@pytest.fixture
def ingested(cli, catalogue) -> list[str]:
    code, out = cli("ingest", *(str(t.path) for t in catalogue))
    assert code == 0, out
    return out["registered"]
