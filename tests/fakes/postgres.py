"""A real, throwaway PostgreSQL for tests: its own cluster, port and socket folder.

:class:`PostgresServer` runs ``initdb`` into a temporary folder (trust authentication for
the role ``mer``, no fsync: the data is thrown away) and starts the server with ``pg_ctl`` on
127.0.0.1 and a free port, its Unix socket in that folder, so it never meets a PostgreSQL the
machine may run. Run as root, both commands run as the ``postgres`` user, as PostgreSQL
requires. The server is stopped when the session ends and when the process exits.

Fixtures (registered in ``tests/conftest.py``):

- ``postgres_server`` (session): the running server; fails, not skips, when PostgreSQL's
  server programs are missing.
- ``postgres_url`` (function): a new, empty database on it, as an asyncpg URL.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.storage.migrate import run_coroutine
from tests.fakes.mpd import free_port

INSTALL_HINT = ("PostgreSQL is not installed: `apt-get install postgresql` (make setup does "
                "it); the PostgreSQL tests run against a real server and are never skipped")
ROLE = "mer"


def server_programs() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (Debian keeps them off the PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return versions[-1].parent if versions else None


class PostgresServer:
    """One throwaway cluster; :meth:`create_database` gives each test its own database."""

    def __init__(self, programs: Path) -> None:
        self.programs = programs
        self._as_postgres = os.geteuid() == 0
        # The postgres user must reach the folder: under root, /tmp rather than a TMPDIR
        # that may sit in root's own folders.
        parent = "/tmp" if self._as_postgres and Path("/tmp").is_dir() else None
        self.root = Path(tempfile.mkdtemp(prefix="mer-postgres-", dir=parent))
        self.data = self.root / "data"
        self.port = free_port()
        self._names = itertools.count()
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *command: str, timeout_s: float = 60.0) -> None:
        argv = [str(self.programs / command[0]), *command[1:]]
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:2])} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}{self.log_tail()}")

    def start(self) -> None:
        """Create the cluster and start the server; returns once it accepts connections."""
        self._run("initdb", "-D", str(self.data), "-U", ROLE, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", "60", "start", timeout_s=90.0)
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the server (at once: the data is thrown away) and delete its folder."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", *, driver: str = "asyncpg") -> str:
        """The database's URL (``driver=""`` gives a plain ``postgresql://`` URL)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{ROLE}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; returns its name."""
        import asyncpg

        name = f"test_{next(self._names)}"

        async def create() -> None:
            connection = await asyncpg.connect(host="127.0.0.1", port=self.port, user=ROLE,
                                               database="postgres")
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        run_coroutine(create())  # also from a test's running event loop
        return name

    def log_tail(self, lines: int = 20) -> str:
        log = self.root / "server.log"
        if not log.is_file():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running throwaway PostgreSQL, shared by the session."""
    programs = server_programs()
    if programs is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    server = PostgresServer(programs)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's server (``postgresql+asyncpg://...``)."""
    return postgres_server.url(postgres_server.create_database())
