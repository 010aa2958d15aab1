"""``mer recommend``, ``mer journey``, ``mer stats``: the stored library, by mood."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from bot.cli import common
from bot.cli.common import app, fail
from bot.cli.render import MOOD_WORDS

if TYPE_CHECKING:
    from bot.service.recommendations import Pick, Picks

OutOpt = Annotated[Path | None, typer.Option("-o", "--output", help="Write a playlist: "
                                             ".m3u8, .xspf or .json (by extension).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON list.")]
HistoryOpt = Annotated[bool, typer.Option(
    "--history/--no-history", help="Leave out the tracks last suggested here "
    "(MER_HISTORY_WINDOW) and remember these; --no-history: neither.")]
#: The history scope of the command line (Discord guilds and MPD servers have their own).
SCOPE = "cli"


def _show(picks: list[Pick], as_json: bool, title: str) -> None:
    from bot.service.playlists import as_json as picks_json

    if as_json:
        print(json.dumps(picks_json(picks), indent=2))
        return
    table = Table(title=title, header_style="bold")
    table.add_column("#", justify="right", no_wrap=True, min_width=2)
    table.add_column("track", no_wrap=True, overflow="ellipsis", max_width=40)
    table.add_column("why", no_wrap=True, overflow="ellipsis")
    for i, pick in enumerate(picks, start=1):
        name = (f"{pick.track.artist} - {pick.track.title}" if pick.track.artist
                else pick.track.title)
        table.add_row(str(i), name, pick.reason)
    common.console().print(table)


def _finish(picks: Picks, output: Path | None) -> None:
    from bot.service import ServiceError
    from bot.service.playlists import write_playlist

    if picks.note:
        typer.echo(picks.note, err=True)
    if output is not None:
        try:
            typer.echo(f"wrote {write_playlist(picks, output)}", err=True)
        except ServiceError as exc:
            raise fail(str(exc)) from exc


@app.command()
def recommend(
    mood: Annotated[str | None, typer.Option("--mood", help="happy, tense, sad or calm "
                                                            "(or Q1..Q4).")] = None,
    like: Annotated[str | None, typer.Option("--like", help="A file, URL or \"Artist - "
                                                            "Title\": tracks like it.")] = None,
    n: Annotated[int, typer.Option("-n", min=1, max=100, help="How many.")] = 10,
    seed: Annotated[int, typer.Option(help="Another seed, another mix of equals.")] = 0,
    as_json: JsonOpt = False,
    output: OutOpt = None,
    history: HistoryOpt = True,
) -> None:
    """Stored tracks for a mood, or like a track, each with its reason."""
    from bot.service import ServiceError

    if (mood is None) == (like is None):
        raise fail("give one of --mood or --like")
    target = mood if mood is not None else like
    assert target is not None

    async def run() -> Picks:
        async with common.service(common.settings(), workers=1) as service:
            return await service.recommendations.recommend(
                target, n, seed=seed, scope=SCOPE if history else None)

    try:
        picks = asyncio.run(run())
    except ServiceError as exc:
        raise fail(str(exc)) from exc
    _show(picks, as_json, f"{len(picks)} picks: {target}")
    _finish(picks, output)


@app.command()
def journey(
    start: Annotated[str, typer.Option("--from", help="A mood, or a track (file, URL, "
                                                      "search text).")],
    end: Annotated[str, typer.Option("--to", help="A mood, or a track.")],
    steps: Annotated[int, typer.Option(min=2, max=100, help="Tracks in the journey.")] = 8,
    route: Annotated[Literal["line", "circumplex"], typer.Option(
        help="line: straight across the valence/arousal plane; circumplex: around the "
             "circle (sad -> calm -> happy, never through tense).")] = "line",
    seed: Annotated[int, typer.Option(help="Another seed, another mix of equals.")] = 0,
    as_json: JsonOpt = False,
    output: OutOpt = None,
    history: HistoryOpt = True,
) -> None:
    """A playlist that walks from one mood to another, one step per track."""
    from bot.service import ServiceError

    async def run() -> Picks:
        async with common.service(common.settings(), workers=1) as service:
            return await service.recommendations.journey(
                start, end, steps, route=route, seed=seed, scope=SCOPE if history else None)

    try:
        picks = asyncio.run(run())
    except ServiceError as exc:
        raise fail(str(exc)) from exc
    _show(picks, as_json, f"journey {start} -> {end} ({route})")
    _finish(picks, output)


@app.command()
def stats(
    plot: Annotated[Path | None, typer.Option("--plot", help="Draw the library on the "
                                                            "valence/arousal plane (PNG).")
                    ] = None,
    journey_from: Annotated[str | None, typer.Option("--journey-from", help="Also draw a "
                                                     "journey from this mood.")] = None,
    journey_to: Annotated[str, typer.Option("--journey-to", help="... to this mood.")
                          ] = "happy",
    steps: Annotated[int, typer.Option(min=2, max=100)] = 8,
) -> None:
    """The library's mood mix; with --plot, a chart of it."""
    from bot.service import ServiceError
    from bot.service.charts import plot_library

    async def run() -> None:
        async with common.service(common.settings(), workers=1) as service:
            library = await service.recommendations.library()
            walk = (await service.recommendations.journey(journey_from, journey_to, steps)
                    if journey_from else [])
        counts = {q: sum(m.quadrant == q for m in library) for q in MOOD_WORDS}
        typer.echo(f"{len(library)} tracks: " + ", ".join(
            f"{MOOD_WORDS[q]} {c}" for q, c in counts.items()))
        if plot is not None:
            await asyncio.to_thread(plot_library, library, plot, journey=walk)
            typer.echo(f"wrote {plot}", err=True)

    try:
        asyncio.run(run())
    except ServiceError as exc:
        raise fail(str(exc)) from exc
