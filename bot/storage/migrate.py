"""Schema migrations from code: upgrade, downgrade, the current revision, the start-up check.

The Alembic configuration is built here, with ``alembic.ini`` and ``migrations/`` located
relative to this package (the repository root), so nothing depends on the current folder.
The sync functions may be called from a running event loop: they then run their own loop in
a worker thread and block until it is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.engine import create_engine, sqlite_file
from bot.storage.errors import SchemaOutOfDateError, StorageError

_T = TypeVar("_T")

#: The repository root, which holds ``alembic.ini`` and ``migrations/``.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def run_coroutine(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from sync code, inside a running event loop or not.

    Parameters
    ----------
    coro : coroutine
        What to run.

    Returns
    -------
    object
        The coroutine's result.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def make_config(url: str | None = None, *, busy_timeout_ms: int = 30000,
                connection: Connection | None = None) -> Config:
    """The Alembic configuration of the application's migrations.

    Parameters
    ----------
    url : str or None
        Database URL (None: ``migrations/env.py`` takes it from the settings).
    busy_timeout_ms : int
        SQLite busy timeout of the migration's connection.
    connection : Connection or None
        A sync connection to migrate on (from ``AsyncConnection.run_sync``) instead of
        opening one.

    Returns
    -------
    alembic.config.Config
        With ``script_location`` absolute, Python logging left alone, and the URL in
        ``config.attributes["sqlalchemy.url"]``.
    """
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise StorageError(f"{MIGRATIONS_DIR}: migrations not found (install from a source "
                           "checkout: pip install -e .)")
    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.is_file() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["configure_logger"] = False
    config.attributes["busy_timeout_ms"] = busy_timeout_ms
    if url is not None:
        config.attributes["sqlalchemy.url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision of the migrations (the one the code needs).

    Returns
    -------
    str
        The head revision id.
    """
    try:
        head = ScriptDirectory.from_config(make_config()).get_current_head()
    except CommandError as exc:
        raise StorageError(f"migrations: {exc}") from exc
    if head is None:
        raise StorageError(f"{MIGRATIONS_DIR}: no migrations")
    return head


def upgrade(url: str, revision: str = "head", *, busy_timeout_ms: int = 30000) -> None:
    """Upgrade a database's schema (creating the database when it does not exist).

    Parameters
    ----------
    url : str
        Database URL (sync or async driver: ``sqlite+aiosqlite:///...``,
        ``postgresql+asyncpg://...``).
    revision : str
        Target revision (``head``, an id, or ``+1``).
    busy_timeout_ms : int
        SQLite busy timeout while migrating.

    Raises
    ------
    alembic.util.exc.CommandError
        Unknown revision.
    sqlalchemy.exc.SQLAlchemyError
        The database cannot be opened or a migration failed.
    """
    command.upgrade(make_config(url, busy_timeout_ms=busy_timeout_ms), revision)


def downgrade(url: str, revision: str, *, busy_timeout_ms: int = 30000) -> None:
    """Downgrade a database's schema; ``base`` drops every table (and its data).

    Parameters
    ----------
    url : str
        Database URL.
    revision : str
        Target revision (an id, ``-1`` or ``base``).
    busy_timeout_ms : int
        SQLite busy timeout while migrating.

    Raises
    ------
    alembic.util.exc.CommandError
        Unknown revision.
    sqlalchemy.exc.SQLAlchemyError
        The database cannot be opened or a migration failed.
    """
    command.downgrade(make_config(url, busy_timeout_ms=busy_timeout_ms), revision)


async def upgrade_async(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the schema on one of the engine's connections (for auto-upgrade at start).

    Parameters
    ----------
    engine : AsyncEngine
        The application's engine.
    revision : str
        Target revision.
    """
    def run(connection: Connection) -> None:
        command.upgrade(make_config(connection=connection), revision)

    async with engine.connect() as connection:
        await connection.run_sync(run)
        await connection.commit()


def _database_heads(connection: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(connection).get_current_heads())


def _label(heads: tuple[str, ...]) -> str | None:
    return ", ".join(sorted(heads)) if heads else None


async def database_revision(engine: AsyncEngine) -> str | None:
    """The revision a database is at.

    Parameters
    ----------
    engine : AsyncEngine
        Engine of the database.

    Returns
    -------
    str or None
        The revision id (several joined by ``", "`` on branched histories); None for a
        database without schema.
    """
    async with engine.connect() as connection:
        return _label(await connection.run_sync(_database_heads))


def current_revision(url: str) -> str | None:
    """The revision a database is at; None when it has no schema (or does not exist).

    Parameters
    ----------
    url : str
        Database URL.

    Returns
    -------
    str or None
        The revision id.
    """
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return None

    async def read() -> str | None:
        engine = create_engine(url)
        try:
            return await database_revision(engine)
        finally:
            await engine.dispose()

    return run_coroutine(read())


async def check_schema(engine: AsyncEngine) -> None:
    """Refuse to run on a database whose schema is not at the code's head revision.

    Parameters
    ----------
    engine : AsyncEngine
        The application's engine.

    Raises
    ------
    SchemaOutOfDateError
        The database is empty, behind, or at a revision this code does not know.
    """
    script = ScriptDirectory.from_config(make_config())
    heads = tuple(script.get_heads())
    async with engine.connect() as connection:
        current = await connection.run_sync(_database_heads)
    if set(current) == set(heads):
        return
    known = True
    for revision in current:
        try:
            known = known and script.get_revision(revision) is not None
        except CommandError:
            known = False
    raise SchemaOutOfDateError(_label(current), _label(heads) or "base", known=known)
