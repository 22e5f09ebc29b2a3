"""Postgres as the Dagster instance's storage: its ``dagster.yaml`` and a throwaway local server.

Production points ``KLIO_POSTGRES_URL`` (``postgresql+psycopg2://user:password@host:port/db``;
dagster-postgres's ``postgres_db`` form fails with SQLAlchemy 2.1) at a managed server, and
``klio-dagster init`` writes a ``dagster.yaml`` that reads it from the environment (the password
is never written to disk). :class:`LocalPostgres` starts a user cluster from the system's Postgres
binaries on a free loopback port, for tests and for trying the Postgres path on one machine.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from klio_dagster.errors import ConfigurationError

#: The variable ``dagster.yaml`` reads the connection URL from.
POSTGRES_URL_VARIABLE = "KLIO_POSTGRES_URL"

STORAGE_CONFIG = f"""\
storage:
  postgres:
    postgres_url:
      env: {POSTGRES_URL_VARIABLE}
"""


def postgres_binaries() -> Path | None:
    """The folder of the system's Postgres server binaries (``initdb``, ``pg_ctl``), newest version first."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalPostgres:
    """A Postgres cluster in ``folder``, serving on 127.0.0.1 only, run as a non-root user.

    ``initdb`` refuses to run as root; as root the cluster belongs to the ``postgres``
    system user, which the system package creates.
    """

    folder: Path
    port: int = 0
    user: str = "klio"

    def __post_init__(self) -> None:
        self.port = self.port or _free_port()
        binaries = postgres_binaries()
        if binaries is None:
            raise ConfigurationError(
                "no Postgres server binaries (initdb, pg_ctl): install the system package "
                "(`apt-get install postgresql`, done by `make postgres` as root)"
            )
        self._bin = binaries
        self._run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def _command(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self._run_as, *args], capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> LocalPostgres:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            shutil.chown(self.folder, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            self._command(str(self._bin / "initdb"), "-D", str(self.data), "-U", self.user,
                          "--auth=trust", "--encoding=UTF8", "--no-sync")
        options = f"-p {self.port} -h 127.0.0.1 -k {self.folder} -c fsync=off -c max_connections=200"
        self._command(str(self._bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                      "-l", str(self.folder / "server.log"), "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        self._command(str(self._bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def create_database(self, name: str) -> str:
        """A new empty database ``name``; its SQLAlchemy URL."""
        import psycopg2

        deadline = time.time() + 30
        while True:
            try:
                connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        return self.url(name)
