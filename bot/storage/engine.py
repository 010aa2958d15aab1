"""The async engine and session factory.

SQLite (through aiosqlite) by default, with WAL journaling and a busy timeout so that the
bot, the CLI and worker tasks can share one file; any SQLAlchemy async URL (for example
``postgresql+asyncpg://...``) works for large deployments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory ones.

    Parameters
    ----------
    url : str or URL
        A SQLAlchemy URL.

    Returns
    -------
    Path or None
        The file's path (``~`` expanded).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        return None
    if database.startswith("file:"):
        database = database[len("file:"):].split("?", 1)[0]
    return Path(database).expanduser()


def create_engine(url: str, *, busy_timeout_ms: int = 30000, echo: bool = False,
                  **kwargs: Any) -> AsyncEngine:
    """Create the application's async engine.

    For SQLite files the parent folder is created, and every new connection gets
    ``PRAGMA busy_timeout``, ``journal_mode=WAL``, ``synchronous=NORMAL`` and
    ``foreign_keys=ON`` (SQLite enforces foreign keys, and so ``ON DELETE CASCADE``, only
    with the last one). Other databases get ``pool_pre_ping``.

    Parameters
    ----------
    url : str
        A SQLAlchemy async URL: ``sqlite+aiosqlite:///path/mood.db``,
        ``postgresql+asyncpg://user:password@host/db``, ...
    busy_timeout_ms : int
        How long a SQLite connection waits for another writer before failing with
        "database is locked".
    echo : bool
        Log every SQL statement.
    **kwargs
        Passed on to :func:`sqlalchemy.ext.asyncio.create_async_engine`.

    Returns
    -------
    AsyncEngine
        The engine; dispose of it (``await engine.dispose()``) at shutdown.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return _create_async_engine(url, echo=echo, **kwargs)

    path = sqlite_file(parsed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if parsed.database and parsed.database.startswith("~"):
            parsed = parsed.set(database=str(path))
    engine = _create_async_engine(parsed, echo=echo, **kwargs)
    pragmas = [f"PRAGMA busy_timeout={int(busy_timeout_ms)}", "PRAGMA foreign_keys=ON"]
    if path is not None:  # WAL needs a file; an in-memory database keeps its own journal
        pragmas += ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL"]

    @event.listens_for(engine.sync_engine, "connect")
    def _set_sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The session factory of an engine (objects stay usable after commit).

    Parameters
    ----------
    engine : AsyncEngine
        From :func:`create_engine`.

    Returns
    -------
    async_sessionmaker
        Factory of :class:`~sqlalchemy.ext.asyncio.AsyncSession` with
        ``expire_on_commit=False``.
    """
    return async_sessionmaker(engine, expire_on_commit=False)
