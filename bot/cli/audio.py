"""``mer classify``, ``mer models``, ``mer spotify``, ``mer demo``: moods of tracks."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from bot.cli import common, interrupt, render
from bot.cli.common import app, fail
from bot.cli.progress import progress_bar, progress_label
from bot.cli.render import ResultRow

if TYPE_CHECKING:
    from bot.service import TrackMood
    from bot.settings import Settings

logger = logging.getLogger(__name__)

#: Batches at least this large are spread over worker processes (each costs ~2 s to start).
_POOL_THRESHOLD = 8

_INTERRUPTED = "interrupted: the moods found so far are saved and come back at once next time."

ModelsOpt = Annotated[Path | None, typer.Option("--models", help="Folder of model cards.")]
WideOpt = Annotated[bool, typer.Option(
    "--wide", "--verbose", "-v",
    help="Every number: the four probabilities, confidence and time (about 110 columns).")]


async def classify_all(config: Settings, inputs: list[str], workers: int | None, *,
                       progress: bool = True) -> list[TrackMood | Exception]:
    """Classify every input through the service; errors come back as values, one per input.

    Parameters
    ----------
    config : Settings
        The settings.
    inputs : list of str
        Files, search text or URLs.
    workers : int, optional
        Worker processes (default: one process for fewer than 8 inputs, else the settings').
    progress : bool
        Show a progress bar on standard output while it runs (terminals only; erased before
        the results are printed).

    Returns
    -------
    list
        Per input, its :class:`TrackMood` or the :class:`ServiceError` that stopped it.
    """
    from bot.service import ServiceError

    if workers is None and len(inputs) < _POOL_THRESHOLD:
        workers = 1
    bar = progress_bar(common.console(), transient=True) if progress else None
    try:
        with bar if bar is not None else nullcontext():
            # Loading the models takes seconds: the bar is up before, so the screen is not
            # blank meanwhile.
            task = (bar.add_task(progress_label("loading models"), total=len(inputs))
                    if bar is not None else None)

            async def one(item: str) -> TrackMood:
                try:
                    return await service.classify(item)
                finally:
                    if bar is not None and task is not None:
                        bar.update(task, advance=1,
                                   description=progress_label(Path(item).name or item))

            async with common.service(config, workers=workers) as service:
                if bar is not None and task is not None:
                    bar.update(task, description=progress_label("classifying"))
                outcomes = await asyncio.gather(*(one(i) for i in inputs),
                                                return_exceptions=True)
    except ServiceError as exc:  # the service could not start; said once the bar is gone
        raise fail(str(exc)) from exc
    results: list[TrackMood | Exception] = []
    for item, outcome in zip(inputs, outcomes, strict=True):
        if isinstance(outcome, BaseException) and not isinstance(outcome, ServiceError):
            # A bug, not a user error: the traceback goes to the log, a short line to the user.
            logger.error("classifying %r failed", item, exc_info=outcome)
            outcome = ServiceError(f"internal error ({type(outcome).__name__})")
        results.append(outcome)
    return results


def _json(mood: TrackMood) -> dict[str, Any]:
    obj = mood.result.to_json()
    obj["track"] = {"id": mood.track_id, "title": mood.title, "artist": mood.artist,
                    "provider": mood.provider, "cached": mood.cached}
    return obj


def _source(mood: TrackMood) -> str:
    return f"{mood.provider}, cached" if mood.cached else mood.provider


def show_results(rows: list[ResultRow], *, wide: bool, heading: str | None = None,
                 name_header: str = "track", source_header: str = "source") -> None:
    """Print a results table on standard output, fitted to the terminal's width.

    Parameters
    ----------
    rows : list of ResultRow
        The classified inputs, in order.
    wide : bool
        Every number (:func:`~bot.cli.render.wide_table`) instead of the compact table.
    heading : str, optional
        A line above the table.
    name_header, source_header : str
        Headers of the first and last columns.
    """
    console = common.console()
    if heading:
        render.print_lines(console, Text(heading, style="bold"))
    if wide:
        table = render.wide_table(rows, width=console.width, name_header=name_header,
                                  source_header=source_header)
    else:
        table = render.results_table(rows, width=console.width, name_header=name_header,
                                     source_header=source_header,
                                     emoji=render.can_show_emoji(console))
    console.print(table)
    render.print_lines(console, *render.legend(wide=wide))


@app.command()
def classify(
    inputs: Annotated[list[str], typer.Argument(
        help="Audio files (mp3, wav, flac, ogg, opus, m4a, ...), search text "
             "(\"Artist - Title\") or track URLs (Spotify, Deezer, YouTube, ...).",
        metavar="INPUT...")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per input per line.")
                       ] = False,
    wide: WideOpt = False,
    models_dir: ModelsOpt = None,
    windows: Annotated[int | None, typer.Option(min=1, max=64, help="Windows per clip.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: one "
                                                           "per core for 8 inputs or more).")
                       ] = None,
) -> None:
    """Classify the mood of audio files, or of tracks named by search text or URL.

    Search text and URLs are resolved through the configured sources (Spotify, Deezer,
    iTunes, yt-dlp). Every result is stored: asking again, for a file that has not changed
    or a track, answers from the database.
    """
    from bot.service import redact

    config = common.settings(models_dir=models_dir, windows=windows)
    outcomes = interrupt.run(classify_all(config, inputs, workers, progress=not as_json),
                             interrupted=lambda: _INTERRUPTED)
    rows: list[ResultRow] = []
    for item, outcome in zip(inputs, outcomes, strict=True):
        if isinstance(outcome, Exception):
            typer.echo(f"error: {render.printable(redact(item))}: {outcome}", err=True)
            continue
        rows.append(ResultRow(outcome.result.input, outcome.result, _source(outcome)))
        if as_json:
            print(json.dumps(_json(outcome)), flush=True)
    if rows and not as_json:
        show_results(rows, wide=wide)
    if len(rows) != len(inputs):
        raise typer.Exit(code=1)


def _macro_f1(metrics: dict[str, Any]) -> float | None:
    value = metrics.get("cv_macro_f1_mean")
    return float(value) if isinstance(value, int | float) else None


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


@app.command()
def models(
    models_dir: ModelsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as JSON.")] = False,
) -> None:
    """Show the models (the newest of each kind in the models folder) and how good they are."""
    from bot.service import ServiceError
    from bot.service.cards import model_cards
    from bot.service.cards import models_dir as folder_of

    config = common.settings(models_dir=models_dir)
    try:
        cards = model_cards(config)
    except ServiceError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print(json.dumps([c.model_dump(mode="json") for c in cards], indent=2))
        return
    folder = folder_of(config)
    rows = [render.ModelRow(kind=card.kind, name=card.display_name,
                            fusion_weight=card.fusion_weight, macro_f1=_macro_f1(card.metrics),
                            size_bytes=_file_size(folder / card.artifact))
            for card in cards]
    console = common.console()
    console.print(render.models_table(rows, width=console.width))
    fused = [card.metrics["fused"] for card in cards
             if isinstance(card.metrics.get("fused"), dict)]
    f1 = _macro_f1(fused[0]) if fused else None
    note = "macro-F1: cross-validated over the four quadrants"
    if f1 is not None:
        note += f"; of the fused mood: {f1:.3f}"
    render.print_lines(console, Text(note, style="dim"),
                       Text(f"folder: {render.printable(str(folder))}", style="dim"))


@app.command()
def spotify(
    features: Annotated[str, typer.Argument(help="Spotify audio features as a JSON object "
                                                 "(danceability, energy, ...); - reads stdin.")],
    models_dir: ModelsOpt = None,
) -> None:
    """Mood from Spotify audio features, for tracks whose features you still hold."""
    from bot.service import ServiceError
    from bot.service.cards import spotify_mood

    text = sys.stdin.read() if features == "-" else features
    try:
        values = json.loads(text)
    except ValueError as exc:
        raise fail(f"spotify features: not JSON: {exc}") from exc
    if not isinstance(values, dict):
        raise fail("spotify features: expected a JSON object")
    try:
        result = spotify_mood(common.settings(models_dir=models_dir), values)
    except ServiceError as exc:
        raise fail(str(exc)) from exc
    print(json.dumps({key: result.to_json()[key] for key in
                      ("mood", "quadrant", "probabilities", "valence", "arousal")}))


@app.command()
def demo(models_dir: ModelsOpt = None, wide: WideOpt = False) -> None:
    """Classify the bundled demo library (MIT-licensed tracks of immich-memories-music)."""
    paths = sorted(common.demo_library().glob("*/*.opus"))
    outcomes = interrupt.run(classify_all(common.settings(models_dir=models_dir),
                                          [str(p) for p in paths], None),
                             interrupted=lambda: _INTERRUPTED)
    rows: list[ResultRow] = []
    for path, outcome in zip(paths, outcomes, strict=True):
        if isinstance(outcome, Exception):
            typer.echo(f"error: {render.printable(str(path))}: {outcome}", err=True)
        else:
            rows.append(ResultRow(path.name, outcome.result, path.parent.name))
    show_results(rows, wide=wide, heading="Demo library: each folder names the mood its "
                                          "tracks were made for", name_header="file",
                 source_header="folder")
