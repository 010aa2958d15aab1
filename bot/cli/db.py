"""``mer db``: create, upgrade and downgrade the database schema (Alembic migrations)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from bot.cli.common import fail
from bot.settings import get_settings

db_app = typer.Typer(help="The database schema: upgrade, downgrade, show the revision.",
                     no_args_is_help=True)


def _database() -> tuple[str, str]:
    """The database URL from the settings, and its printable form (password hidden)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = get_settings().resolved_database_url()
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError as exc:
        raise fail(f"MER_DATABASE_URL: {exc}") from exc
    return url, shown


def _migrate_errors() -> tuple[type[Exception], ...]:
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from bot.db.errors import StorageError

    return (StorageError, CommandError, SQLAlchemyError, ImportError, OSError)


def _revision_label(revision: str | None, head: str) -> str:
    if revision is None:
        return "no schema (empty database)"
    return f"{revision} (head)" if revision == head else f"{revision} (head is {head})"


def _migrate(direction: Literal["upgrade", "downgrade"], revision: str) -> None:
    from bot.db import migrate

    url, shown = _database()
    step = migrate.upgrade if direction == "upgrade" else migrate.downgrade
    try:
        before = migrate.current_revision(url)
        step(url, revision, busy_timeout_ms=get_settings().sqlite_busy_timeout_ms)
        after = migrate.current_revision(url)
        head = migrate.head_revision()
    except _migrate_errors() as exc:
        raise fail(f"{shown}: {direction} to {revision} failed: {exc}") from exc
    if before == after:
        typer.echo(f"{shown}: already at {_revision_label(after, head)}")
    else:
        typer.echo(f"{shown}: {direction}d from {before or 'empty'} to "
                   f"{_revision_label(after, head)}")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or upgrade the database schema (MER_DATABASE_URL, or mood.db in MER_DATA_DIR)."""
    _migrate("upgrade", revision)


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision: an id, base (drops every "
                                                 "table and its data), or -- -1 (one step).")],
) -> None:
    """Downgrade the database schema."""
    _migrate("downgrade", revision)


@db_app.command("current")
def db_current() -> None:
    """Show the revision the database schema is at, and the one the code needs."""
    from bot.db import migrate

    url, shown = _database()
    try:
        current = migrate.current_revision(url)
        head = migrate.head_revision()
    except _migrate_errors() as exc:
        raise fail(f"{shown}: {exc}") from exc
    typer.echo(f"{shown}: {_revision_label(current, head)}")
