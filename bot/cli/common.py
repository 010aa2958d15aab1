"""What every ``mer`` command shares: the app, consoles, error exit, the results table."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from mer_models.result import MoodResult

app = typer.Typer(help="Mood of music: classify audio into happy, tense, sad or calm.",
                  no_args_is_help=True, add_completion=False)
out = Console()


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise (status 1)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


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
