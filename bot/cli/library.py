"""``mer scan``: index a local music library into the database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from bot.cli import common
from bot.cli.common import app, fail, out


@app.command()
def scan(
    directory: Annotated[Path, typer.Argument(help="Folder of audio files (searched "
                                                   "recursively).")],
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: "
                                                           "MER_WORKERS, 0 = all cores).")
                       ] = None,
) -> None:
    """Classify every audio file of a library once; unchanged files are skipped on a rescan."""
    from bot.service import ServiceError

    if not directory.is_dir():
        raise fail(f"{directory}: not a directory")
    config = common.settings()

    async def run() -> None:
        async with common.service(config, workers=workers) as service:
            with Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), TimeRemainingColumn(), console=out) as bar:
                task = bar.add_task("scanning", total=None)
                try:
                    report = await service.scan(
                        directory, progress=lambda done, total, _path:
                        bar.update(task, completed=done, total=total))
                except ServiceError as exc:
                    raise fail(str(exc)) from exc
        for path, reason in sorted(report.failed.items()):
            typer.echo(f"error: {path}: {reason}", err=True)
        out.print(f"{report.classified} classified, {report.unchanged} unchanged, "
                  f"{len(report.failed)} failed")
        if report.failed:
            raise typer.Exit(code=1)

    asyncio.run(run())
