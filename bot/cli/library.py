"""``mer scan``: index a local music library into the database."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli import common, interrupt, progress, render
from bot.cli.common import app, fail

if TYPE_CHECKING:
    from bot.service import ScanReport

@dataclass
class _Reached:
    """How far a scan got, kept outside the event loop so Ctrl-C can report it."""

    done: int = 0
    total: int | None = None


@app.command()
def scan(
    directory: Annotated[Path, typer.Argument(help="Folder of audio files (searched "
                                                   "recursively).")],
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: "
                                                           "MER_WORKERS, 0 = all cores).")
                       ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="List every file that failed, not only the "
                                               "first few.")] = False,
) -> None:
    """Classify every audio file of a library once; unchanged files are skipped on a rescan.

    Ctrl-C stops the scan (exit status 130): every file finished so far is stored, so the
    same command resumes where it stopped.
    """
    from bot.service import ServiceError

    if not directory.is_dir():
        raise fail(f"{render.printable(str(directory))}: not a directory")
    config = common.settings()
    console = common.console()
    reached = _Reached()
    started = time.monotonic()

    async def run() -> ScanReport:
        with progress.progress_bar(console) as bar:
            task = bar.add_task(progress.progress_label("loading models"), total=None)

            def on_file(done: int, total: int, path: Path) -> None:
                reached.done, reached.total = done, total
                bar.update(task, completed=done, total=total,
                           description=progress.progress_label(path.name))

            try:
                async with common.service(config, workers=workers) as service:
                    bar.update(task, description=progress.progress_label("finding files"))
                    report = await service.scan(directory, progress=on_file)
                if report.total == 0:  # an empty bar says nothing the summary does not
                    bar.live.transient = True
                return report
            except ServiceError:
                bar.live.transient = True  # nothing was scanned: the error line replaces it
                raise

    try:
        # Ctrl-C cancels run(): the file under way is dropped, the service closed; what was
        # stored before stays (one transaction per file), so a rescan resumes.
        report = interrupt.run(run(), interrupted=lambda: progress.interrupted_message(
            reached.done, reached.total))
    except ServiceError as exc:  # said here, once the bar is gone: not drawn into it
        raise fail(str(exc)) from exc
    render.print_lines(console, *progress.scan_summary(
        report, seconds=time.monotonic() - started, width=console.width, root=str(directory),
        verbose=verbose, emoji=render.can_show_emoji(console)))
    if report.failed:
        raise typer.Exit(code=1)
