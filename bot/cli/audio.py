"""``mer classify``, ``mer models``, ``mer spotify``, ``mer demo``: moods of tracks."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from bot.cli import common
from bot.cli.common import app, fail, out, results_table

if TYPE_CHECKING:
    from bot.service import MoodResult, TrackMood
    from bot.settings import Settings

logger = logging.getLogger(__name__)

#: Batches at least this large are spread over worker processes (each costs ~2 s to start).
_POOL_THRESHOLD = 8

ModelsOpt = Annotated[Path | None, typer.Option("--models", help="Folder of model cards.")]


async def classify_all(config: Settings, inputs: list[str], workers: int | None
                       ) -> list[TrackMood | Exception]:
    """Classify every input through the service; errors come back as values, one per input."""
    from bot.service import ServiceError

    if workers is None and len(inputs) < _POOL_THRESHOLD:
        workers = 1
    async with common.service(config, workers=workers) as service:
        outcomes = await asyncio.gather(*(service.classify(i) for i in inputs),
                                        return_exceptions=True)
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


@app.command()
def classify(
    inputs: Annotated[list[str], typer.Argument(
        help="Audio files (mp3, wav, flac, ogg, opus, m4a, ...), search text "
             "(\"Artist - Title\") or track URLs (Spotify, Deezer, YouTube, ...).",
        metavar="INPUT...")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per input per line.")
                       ] = False,
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
    outcomes = asyncio.run(classify_all(config, inputs, workers))
    ok: list[MoodResult] = []
    for item, outcome in zip(inputs, outcomes, strict=True):
        if isinstance(outcome, Exception):
            typer.echo(f"error: {redact(item)}: {outcome}", err=True)
            continue
        ok.append(outcome.result)
        if as_json:
            print(json.dumps(_json(outcome)), flush=True)
    if ok and not as_json:
        out.print(results_table(ok))
    if len(ok) != len(inputs):
        raise typer.Exit(code=1)


@app.command()
def models(
    models_dir: ModelsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as JSON.")] = False,
) -> None:
    """Show the model cards (the newest of each kind in the models folder)."""
    from bot.service import ServiceError
    from bot.service.cards import model_cards

    try:
        cards = model_cards(common.settings(models_dir=models_dir))
    except ServiceError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print(json.dumps([c.model_dump(mode="json") for c in cards], indent=2))
        return
    for card in cards:
        table = Table(title=f"{card.display_name} ({card.kind})", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        table.add_row("artifact", f"{card.artifact}  sha256 {card.sha256[:16]}...")
        table.add_row("classes", ", ".join(card.classes))
        table.add_row("training", f"{card.training.dataset} ({card.training.n_clips} clips); "
                                  f"{card.training.split}")
        table.add_row("fusion weight", f"{card.fusion_weight:g}")
        for name, value in card.metrics.items():
            if isinstance(value, int | float | str):
                table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
        table.add_row("created", card.created)
        out.print(table)


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
def demo(models_dir: ModelsOpt = None) -> None:
    """Classify the bundled demo library (MIT-licensed tracks of immich-memories-music)."""
    try:
        from immich_memories_music import tracks_dir
    except ImportError as exc:
        raise fail("the demo library is not installed: pip install immich-memories-music"
                    ) from exc
    paths = sorted(tracks_dir().glob("*/*.opus"))
    outcomes = asyncio.run(classify_all(common.settings(models_dir=models_dir),
                                        [str(p) for p in paths], None))
    ok: list[MoodResult] = []
    for path, outcome in zip(paths, outcomes, strict=True):
        if isinstance(outcome, Exception):
            typer.echo(f"error: {path}: {outcome}", err=True)
        else:
            from dataclasses import replace

            ok.append(replace(outcome.result, input=f"{path.parent.name}/{path.name}"))
    out.print(results_table(ok, title="Demo library: folder = the track's intended mood"))
