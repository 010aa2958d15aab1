"""``mer db``: create, upgrade and downgrade the database schema (Alembic migrations)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from bot.cli import common
from bot.cli.common import fail

db_app = typer.Typer(help="The database schema: upgrade, downgrade, show the revision.",
                     no_args_is_help=True)


def _migrate(direction: Literal["upgrade", "downgrade"], target: str) -> None:
    from bot.service import ServiceError
    from bot.service.database import migrate, shown_url

    config = common.settings()
    try:
        before, after = migrate(config, direction, target)
    except ServiceError as exc:
        raise fail(str(exc)) from exc
    shown = shown_url(config)
    if before.current == after.current:
        typer.echo(f"{shown}: already at {after}")
    else:
        typer.echo(f"{shown}: {direction}d from {before.current or 'empty'} to {after}")


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
    from bot.service import ServiceError
    from bot.service.database import revision, shown_url

    config = common.settings()
    try:
        typer.echo(f"{shown_url(config)}: {revision(config)}")
    except ServiceError as exc:
        raise fail(str(exc)) from exc
