"""What every ``mer`` command shares: the app, the console, error exits, the service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from bot.service import MoodResult, MoodService
    from bot.settings import Settings

app = typer.Typer(help="Mood of music: classify audio into happy, tense, sad or calm.",
                  no_args_is_help=True, add_completion=False)
out = Console()


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
    typer.Exit
        The service cannot start (database, models): one line on stderr.
    """
    from bot.service import MoodService, ServiceError

    try:
        created = await MoodService.create(config, allow_local_files=True, workers=workers)
    except ServiceError as exc:
        raise fail(str(exc)) from exc
    async with created:
        yield created


def results_table(results: list[MoodResult], title: str | None = None) -> Table:
    """A rich table of results, one row per input."""
    table = Table(title=title, header_style="bold")
    for column in ("input", "mood", "quadrant"):
        table.add_column(column, overflow="fold")
    for column in ("P(Q1)", "P(Q2)", "P(Q3)", "P(Q4)", "valence", "arousal", "conf.", "ms"):
        table.add_column(column, justify="right")
    for r in results:
        p = r.probabilities
        table.add_row(r.input, r.mood, r.quadrant.value,
                      *(f"{p[q]:.2f}" for q in ("Q1", "Q2", "Q3", "Q4")),
                      f"{r.valence:.2f}", f"{r.arousal:.2f}", f"{r.confidence:.2f}",
                      f"{r.timings_ms.get('total', 0):.0f}")
    return table
