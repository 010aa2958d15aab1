"""Alembic environment of the mood companion's database.

The URL comes from ``config.attributes["sqlalchemy.url"]`` (set by :mod:`bot.storage.migrate`),
else from ``sqlalchemy.url`` in ``alembic.ini`` (left empty), else from the settings
(``MER_DATABASE_URL``, or the SQLite file in ``MER_DATA_DIR``). Code that already holds a
connection passes it as ``config.attributes["connection"]`` (see
:func:`bot.storage.migrate.upgrade_async`). Async engines run the migrations through
``run_sync``; SQLite uses batch mode (``render_as_batch``) so that later migrations can
alter tables.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection

# Every model module, so that autogenerate sees every table (the Discord front-end declares
# its own tables on the same base).
import bot.discord.models
import bot.storage.models
from bot.storage.engine import create_engine
from bot.storage.errors import StorageError
from bot.storage.migrate import run_coroutine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = bot.storage.models.Base.metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Autogenerate: write UTCDateTime as a plain ``sa.DateTime(timezone=True)``."""
    if type_ == "type" and isinstance(obj, bot.storage.models.UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _url() -> str:
    url = config.attributes.get("sqlalchemy.url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    from bot.settings import get_settings

    return get_settings().database_url


def _busy_timeout_ms() -> int:
    value = config.attributes.get("busy_timeout_ms")
    if value is not None:
        return int(value)
    from bot.settings import get_settings

    return get_settings().storage.sqlite_busy_timeout_ms


def run_migrations_offline() -> None:
    """Write the migrations' SQL to stdout (``alembic upgrade head --sql``)."""
    url = _url()
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=url.startswith("sqlite"), render_item=render_item,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on a synchronous connection (inside ``run_sync``)."""
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds tables (copy, drop, rename): with foreign keys on, dropping a
        # parent table would cascade-delete its children's rows. The pragma only takes
        # effect outside a transaction, hence the commit.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    try:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=sqlite, compare_type=True,
                          render_item=render_item)
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise StorageError(f"the migration left rows with dangling foreign keys: "
                                   f"{broken[:5]}")
    finally:
        if sqlite:
            connection.rollback()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


async def run_async_migrations() -> None:
    """Open an async engine on the URL and run the migrations through ``run_sync``."""
    engine = create_engine(_url(), busy_timeout_ms=_busy_timeout_ms(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on a new engine for the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        run_coroutine(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
