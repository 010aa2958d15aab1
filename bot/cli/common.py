"""What every ``mer`` command shares: the app, the console, error exits, the service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from bot.cli.render import make_console

if TYPE_CHECKING:
    from bot.service import MoodService
    from bot.settings import Settings

app = typer.Typer(help="Mood of music: classify audio into happy, tense, sad or calm.",
                  no_args_is_help=True, add_completion=False)


def console() -> Console:
    """Standard output for this command (see :func:`bot.cli.render.make_console`)."""
    return make_console()


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise (status 1)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def settings(*, models_dir: Path | None = None, windows: int | None = None) -> Settings:
    """The settings, with command-line overrides of the engine section.

    Raises
    ------
    typer.Exit
        The settings are invalid (one line on stderr).
    """
    from bot.settings import SettingsError, get_settings

    try:
        current = get_settings()
    except SettingsError as exc:
        raise fail(str(exc)) from exc
    engine = {k: v for k, v in {"models_dir": models_dir, "n_windows": windows}.items()
              if v is not None}
    if not engine:
        return current
    return current.model_copy(update={"engine": current.engine.model_copy(update=engine)})


@asynccontextmanager
async def service(config: Settings, *, workers: int | None = None
                  ) -> AsyncIterator[MoodService]:
    """The service for one command (local files allowed), closed afterwards.

    Raises
    ------
    ServiceError
        The service cannot start (database, models). Not printed here: the caller reports
        it with :func:`fail` once its progress bar is gone, or the line would be drawn into
        the bar.
    """
    from bot.service import MoodService

    created = await MoodService.create(config, allow_local_files=True, workers=workers)
    async with created:
        yield created


def demo_library() -> Path:
    """The folder of the demo tracks (immich-memories-music, MIT-licensed).

    Raises
    ------
    typer.Exit
        The package is not installed (one line on stderr).
    """
    try:
        from immich_memories_music import tracks_dir
    except ImportError as exc:
        raise fail("the demo library is not installed: pip install immich-memories-music"
                   ) from exc
    return Path(tracks_dir())
