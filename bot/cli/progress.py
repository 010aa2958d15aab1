"""Progress over many files (``mer scan``, ``mer classify``, ``mer demo``) and the scan's summary.

The bar keeps what matters at 80 columns: every column but the bar itself has a fixed
width (a short label, done/total, files per second, time left) and the bar takes the rest.
It is drawn only on a terminal; piped output gets the summary alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.constrain import Constrain
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from bot.cli.render import (
    MIN_NAME_WIDTH,
    MOOD_STYLE,
    QUADRANTS,
    fit_text,
    mood_text,
    printable,
    shorten_path,
)

if TYPE_CHECKING:
    from bot.service import ScanReport

#: Width of the progress label (the file just done).
LABEL_WIDTH = 20


class RateColumn(ProgressColumn):
    """Files per second, in a fixed width so the bar does not jump."""

    def render(self, task: Task) -> Text:
        """``12.3 files/s``, or dashes before the first file is done."""
        speed = task.finished_speed or task.speed
        shown = "  -.-" if speed is None else f"{speed:5.1f}"
        return Text(f"{shown} files/s", style="progress.data.speed", no_wrap=True)


class _NarrowProgress(Progress):
    """A progress display that leaves the last two cells of its line free.

    The terminal echoes Ctrl-C as ``^C`` where the cursor is, at the end of the bar: on a
    line with no room left the echo wraps, and rich's redraw, which counts lines, leaves a
    stale copy of the bar behind.
    """

    def get_renderables(self) -> Iterable[RenderableType]:
        """The tasks table, two cells narrower than the space given."""
        yield _RoomForCtrlC(self.make_tasks_table(self.tasks))


class _RoomForCtrlC:
    """A renderable drawn two cells narrower than the space it is given."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Constrain(self.renderable, width=max(1, options.max_width - 2))


def progress_bar(console: Console, *, transient: bool = False) -> Progress:
    """A progress bar over files: the file just done, bar, done/total, files/s, time left.

    Every column but the bar has a fixed width, and the bar takes what is left, so the
    count, the rate and the time left stay on screen at 80 columns. It is off (prints
    nothing) when the console is not a terminal.

    Parameters
    ----------
    console : Console
        Where to draw it.
    transient : bool
        Erase the bar when it stops (when a table follows it).

    Returns
    -------
    Progress
        Not started; use it as a context manager. Standard error is not redirected through
        it: error lines stay on standard error even while the bar is drawn.
    """
    return _NarrowProgress(TextColumn("{task.description}", markup=False),
                           BarColumn(bar_width=None),
                           MofNCompleteColumn(), RateColumn(),
                           TimeRemainingColumn(elapsed_when_finished=True),
                           console=console, expand=True, transient=transient,
                           redirect_stdout=False, redirect_stderr=False,
                           disable=not console.is_terminal)


def progress_label(name: str) -> str:
    """The progress bar's label for a file: its name, shortened to :data:`LABEL_WIDTH`."""
    return fit_text(name, LABEL_WIDTH)


def _mix_line(quadrant: str, count: int, total: int, *, emoji: bool, bar_width: int) -> Text:
    share = count / total if total else 0.0
    filled = round(share * bar_width)
    _, colour = MOOD_STYLE[quadrant]
    line = Text("  ")
    line.append_text(mood_text(quadrant, emoji=emoji))
    line.append(f" {count:>6} ")
    line.append("█" * filled, style=colour)
    line.append("·" * (bar_width - filled), style="dim")
    line.append(f" {share:4.0%}")
    return line


def scan_summary(report: ScanReport, *, seconds: float, width: int, root: str = "",
                 verbose: bool = False, emoji: bool = True, first_failures: int = 3
                 ) -> list[Text]:
    """What a finished scan did, and the mood mix of the library it scanned.

    Parameters
    ----------
    report : ScanReport
        The scan's report.
    seconds : float
        How long it took.
    width : int
        The console's width in cells (failure lines are shortened to it).
    root : str
        The scanned folder: failed files are named relative to it (their own names are what
        tells them apart, and what a shortened path would cut first).
    verbose : bool
        List every failure, not only the first few.
    emoji : bool
        Show the mood emoji.
    first_failures : int
        Failures listed without ``verbose``.

    Returns
    -------
    list of Text
        Lines to print with :func:`print_lines`: the counts, the failures (``path: reason``),
        and one bar per mood.
    """
    lines: list[Text] = []
    counts = Text()
    counts.append(f"{report.total} files in {seconds:.1f} s: ")
    counts.append(f"{report.classified} classified", style="bold")
    counts.append(f", {report.unchanged} unchanged, ")
    counts.append(f"{len(report.failed)} failed", style="bold red" if report.failed else "")
    lines.append(counts)
    failures = sorted(report.failed.items())
    shown = failures if verbose else failures[:first_failures]
    room = width - 6  # "  ✗ " and ": "
    prefix = printable(root).rstrip(os.sep) + os.sep if root else None
    for path, reason in shown:
        name, why = printable(path), printable(reason)
        if prefix and name.startswith(prefix):
            name = name[len(prefix):]
        # The path gets what the reason leaves, but at least 40 % of the line: a reason cut
        # at the end still says what went wrong, a path cut to nothing says nothing.
        path_width = max(room - cell_len(why), room * 2 // 5, MIN_NAME_WIDTH)
        lines.append(Text(f"  ✗ {shorten_path(name, path_width)}: {why}"))
    if len(failures) > len(shown):
        lines.append(Text(f"  … and {len(failures) - len(shown)} more (mer scan -v lists "
                          "them all)", style="dim"))
    total = sum(report.quadrants.values())
    if total:
        lines.append(Text(f"Mood mix of the {total} files with a mood:"))
        bar_width = max(10, min(40, width - 30))
        lines += [_mix_line(q, report.quadrants.get(q, 0), total, emoji=emoji,
                            bar_width=bar_width) for q in QUADRANTS]
    return lines


def interrupted_message(done: int, total: int | None) -> str:
    """What a scan stopped by Ctrl-C says: how far it got, and that a rescan resumes.

    ``done`` counts failed files too: they were not stored, so the rescan tries them again.
    """
    if total is None:
        return "interrupted before the first file was done; nothing was written."
    return (f"interrupted after {done} of {total} files.\n"
            "Finished files are saved, nothing is half-written; the same mer scan resumes.")
