"""The database as front-ends see it: open it, migrate it, and say in one line what is wrong.

Front-ends never import :mod:`bot.storage`; ``mer db`` calls :func:`migrate` and
:func:`revision` here, and every failure comes back as a :class:`ServiceError` whose message
names the database (password hidden) and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.service.errors import ServiceError
from bot.settings import Settings
from bot.storage import migrate as migrations
from bot.storage.engine import create_engine
from bot.storage.errors import StorageError


def database_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean "the database is unusable", not "the code is wrong"."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    return (StorageError, CommandError, SQLAlchemyError, ArgumentError, OSError, ImportError)


def shown_url(settings: Settings) -> str:
    """The database URL with its password hidden (what messages may show)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(settings.database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "MER_DATABASE_URL"


def describe_database_error(settings: Settings, exc: BaseException) -> str:
    """One line: which database, and what is wrong with it."""
    reason = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    text = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
    if isinstance(exc, OSError) and exc.filename:
        text = f"{exc.strerror}: {exc.filename}"
    return f"database {shown_url(settings)}: {text}"


def open_engine(settings: Settings) -> AsyncEngine:
    """The application's database engine (nothing is connected yet).

    Raises
    ------
    ServiceError
        The URL is malformed or its driver is not installed, or the folder of a SQLite file
        cannot be created.
    """
    try:
        return create_engine(settings.database_url,
                             busy_timeout_ms=settings.storage.sqlite_busy_timeout_ms)
    except database_errors() as exc:
        raise ServiceError(describe_database_error(settings, exc)) from exc


@dataclass(frozen=True)
class Revision:
    """Where a database's schema stands: its revision (None: empty) and the code's head."""

    current: str | None
    head: str

    def __str__(self) -> str:
        if self.current is None:
            return "no schema (empty database)"
        if self.current == self.head:
            return f"{self.current} (head)"
        return f"{self.current} (head is {self.head})"


def revision(settings: Settings) -> Revision:
    """The schema revision of the configured database.

    Raises
    ------
    ServiceError
        The database cannot be read.
    """
    try:
        return Revision(migrations.current_revision(settings.database_url),
                        migrations.head_revision())
    except database_errors() as exc:
        raise ServiceError(describe_database_error(settings, exc)) from exc


def migrate(settings: Settings, direction: Literal["upgrade", "downgrade"],
            target: str) -> tuple[Revision, Revision]:
    """Upgrade or downgrade the configured database's schema.

    Parameters
    ----------
    settings : Settings
        Which database.
    direction : {"upgrade", "downgrade"}
        Which way.
    target : str
        A revision id, ``head``, ``base`` (drops every table) or a relative step (``-1``).

    Returns
    -------
    tuple of Revision
        Before and after.

    Raises
    ------
    ServiceError
        The migration failed (the message says why).
    """
    before = revision(settings)
    step = migrations.upgrade if direction == "upgrade" else migrations.downgrade
    try:
        step(settings.database_url, target,
             busy_timeout_ms=settings.storage.sqlite_busy_timeout_ms)
    except database_errors() as exc:
        detail = describe_database_error(settings, exc)
        raise ServiceError(f"{detail} ({direction} to {target} failed)") from exc
    return before, revision(settings)
