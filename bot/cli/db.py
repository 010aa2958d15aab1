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


@db_app.command("prune")
def db_prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; delete "
                                                            "nothing.")] = False,
) -> None:
    """Delete the stored moods of models that are no longer served.

    Each model set (versions and fusion weights) keeps its own predictions; after new models
    or weights, the old ones are never served again. Tracks, sources, features, feedback and
    history stay; should the old models come back, tracks are classified again on request.
    """
    import asyncio

    from bot.service import ServiceError
    from bot.service.database import shown_url

    config = common.settings()

    async def run() -> tuple[str, list[tuple[str, int]], int]:
        async with common.service(config, workers=1) as service:
            keys = await service.stored_model_sets()
            deleted = 0 if dry_run else await service.prune_predictions()
            return service.models_key, keys, deleted

    try:
        live, keys, deleted = asyncio.run(run())
    except ServiceError as exc:
        raise fail(str(exc)) from exc
    stale = [count for key, count in keys if key != live]
    typer.echo(f"{shown_url(config)}: {_plural(len(keys), 'model set')} with stored moods")
    for key, count in keys:
        mark = "live" if key == live else ("old" if dry_run else "deleted")
        typer.echo(f"  {mark:7} {count:6} {key}")
    older = _plural(len(stale), "older model set")
    if not stale:
        typer.echo("nothing to prune: every stored mood is the live models'")
    elif dry_run:
        typer.echo(f"would delete {_plural(sum(stale), 'prediction')} of {older} "
                   "(run without --dry-run)")
    else:
        typer.echo(f"deleted {_plural(deleted, 'prediction')} of {older}")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"
