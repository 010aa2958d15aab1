"""``mer classify``, ``mer models``, ``mer spotify``, ``mer demo``: the engine's commands."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bot.cli.common import app, fail, out, results_table
from bot.settings import get_settings
from mer_models.card import ModelCard, find_cards
from mer_models.config import AnalysisConfig
from mer_models.errors import MerError
from mer_models.moods import Quadrant
from mer_models.result import MoodResult

if TYPE_CHECKING:
    from bot.service import TrackMood
    from mer_models.engine import MoodEngine

logger = logging.getLogger(__name__)

#: Batches at least this large are spread over worker processes (each costs ~2 s to start).
_POOL_THRESHOLD = 8


def _engine(models_dir: Path | None, windows: int | None) -> MoodEngine:
    from mer_models.engine import MoodEngine

    settings = get_settings()
    config = AnalysisConfig(n_windows=windows or settings.n_windows)
    return MoodEngine(models_dir or settings.models_dir, config=config,
                      threads=settings.threads, prefer_gpu=settings.prefer_gpu)


def _classify_all(paths: list[Path], models_dir: Path | None, windows: int | None,
                  workers: int | None) -> list[MoodResult | Exception]:
    try:
        engine = _engine(models_dir, windows)
    except MerError as exc:
        raise fail(str(exc)) from exc
    workers = workers if workers is not None else (get_settings().workers or None)
    if len(paths) >= _POOL_THRESHOLD and workers != 1:
        return engine.classify_many([str(p) for p in paths], workers=workers)
    return engine.classify_many([str(p) for p in paths], workers=1)


def looks_like_file(text: str) -> bool:
    """Whether an input names a local file (else it is search text or a URL)."""
    from bot.sources.local import AUDIO_EXTENSIONS  # bot.sources loads yt-dlp: only when used

    if "://" in text or text.startswith(("spotify:", "www.")):
        return False
    path = Path(text).expanduser()
    return (path.exists() or path.suffix.lower() in AUDIO_EXTENSIONS
            or text.startswith(("/", "./", "../", "~")))


async def _classify_queries(queries: list[str], models_dir: Path | None
                            ) -> list[TrackMood | Exception]:
    from bot.db.errors import StorageError
    from bot.service import MoodService, ServiceError

    settings = get_settings()
    if models_dir is not None:
        settings = settings.model_copy(update={"models_dir": models_dir})
    try:
        service = await MoodService.create(settings, allow_local_files=True, workers=1)
    except (StorageError, MerError) as exc:
        raise fail(str(exc)) from exc
    async with service:
        outcomes = await asyncio.gather(*(service.classify(q) for q in queries),
                                        return_exceptions=True)
    results: list[TrackMood | Exception] = []
    for query, outcome in zip(queries, outcomes, strict=True):
        if isinstance(outcome, BaseException) and not isinstance(outcome, ServiceError):
            # A bug, not a user error: the traceback goes to the log, a short line to the user.
            logger.error("classifying %r failed", query, exc_info=outcome)
            outcome = ServiceError(f"internal error ({type(outcome).__name__})")
        results.append(outcome)
    return results


@app.command()
def classify(
    inputs: Annotated[list[str], typer.Argument(
        help="Audio files (mp3, wav, flac, ogg, opus, m4a, ...), search text "
             "(\"Artist - Title\") or track URLs (Spotify, Deezer, YouTube, ...).",
        metavar="INPUT...")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per input per line.")
                       ] = False,
    models_dir: Annotated[Path | None, typer.Option("--models", help="Folder of model cards.")
                          ] = None,
    windows: Annotated[int | None, typer.Option(min=1, max=64, help="Windows per clip.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes for large "
                                                           "batches of files (default: all "
                                                           "cores).")] = None,
) -> None:
    """Classify the mood of audio files, or of tracks named by search text or URL.

    Files are analysed directly. Search text and URLs are resolved through the configured
    sources (Spotify, Deezer, iTunes, yt-dlp), and the result is stored in the database:
    asking again answers from it.
    """
    files = [i for i in inputs if looks_like_file(i)]
    queries = [i for i in inputs if not looks_like_file(i)]
    by_input: dict[str, MoodResult | Exception] = {}
    if files:
        by_input.update(zip(files, _classify_all([Path(f) for f in files], models_dir,
                                                 windows, workers), strict=True))
    extra: dict[str, dict[str, object]] = {}
    if queries:
        for query, outcome in zip(queries, asyncio.run(_classify_queries(queries, models_dir)),
                                  strict=True):
            if isinstance(outcome, Exception):
                by_input[query] = outcome
            else:
                by_input[query] = outcome.result
                extra[query] = {"id": outcome.track_id, "title": outcome.title,
                                "artist": outcome.artist, "provider": outcome.provider,
                                "cached": outcome.cached}
    ok: list[MoodResult] = []
    for item in inputs:
        result = by_input[item]
        if isinstance(result, MoodResult):
            ok.append(result)
            if as_json:
                obj = result.to_json()
                if item in extra:
                    obj["track"] = extra[item]
                print(json.dumps(obj), flush=True)
        else:
            typer.echo(f"error: {result}" if isinstance(result, MerError) or item in files
                       else f"error: {item}: {result}", err=True)
    if ok and not as_json:
        out.print(results_table(ok))
    if len(ok) != len(inputs):
        raise typer.Exit(code=1)


@app.command()
def models(
    models_dir: Annotated[Path | None, typer.Option("--models", help="Folder of model cards.")
                          ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cards as JSON.")] = False,
) -> None:
    """Show the model cards (the newest of each kind in the models folder)."""
    try:
        engine = _engine(models_dir, None)
    except MerError as exc:
        raise fail(str(exc)) from exc
    cards = [ModelCard.load(path) for path in find_cards(engine.models_dir).values()]
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
    models_dir: Annotated[Path | None, typer.Option("--models", help="Folder of model cards.")
                          ] = None,
) -> None:
    """Mood from Spotify audio features, for tracks whose features you still hold."""
    from mer_models.engine import DEFAULT_MODELS_DIR
    from mer_models.spotify import SpotifyFeatureModel

    folder = models_dir or get_settings().models_dir or DEFAULT_MODELS_DIR
    card = find_cards(folder).get("spotify-ensemble")
    if card is None:
        raise fail(f"{folder}: no Spotify-feature model (train it: python -m train "
                    "reproduce-seed)")
    text = sys.stdin.read() if features == "-" else features
    try:
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError("expected a JSON object")
        probabilities = SpotifyFeatureModel(card).predict(values)
    except (ValueError, MerError) as exc:
        raise fail(f"spotify features: {exc}") from exc
    quadrant = Quadrant(max(probabilities, key=probabilities.__getitem__))
    print(json.dumps({"mood": quadrant.mood, "quadrant": quadrant.value,
                      "probabilities": {k: round(v, 4) for k, v in probabilities.items()},
                      "valence": round(probabilities["Q1"] + probabilities["Q4"], 4),
                      "arousal": round(probabilities["Q1"] + probabilities["Q2"], 4)}))


@app.command()
def demo(
    models_dir: Annotated[Path | None, typer.Option("--models", help="Folder of model cards.")
                          ] = None,
) -> None:
    """Classify the bundled demo library (MIT-licensed tracks of immich-memories-music)."""
    try:
        from immich_memories_music import tracks_dir
    except ImportError as exc:
        raise fail("the demo library is not installed: pip install immich-memories-music"
                    ) from exc
    paths = sorted(tracks_dir().glob("*/*.opus"))
    results = _classify_all(paths, models_dir, None, None)
    ok: list[MoodResult] = []
    for path, result in zip(paths, results, strict=True):
        if isinstance(result, MoodResult):
            ok.append(MoodResult(input=f"{path.parent.name}/{path.name}",
                                 probabilities=result.probabilities, windows=result.windows,
                                 models=result.models, timings_ms=result.timings_ms,
                                 duration=result.duration))
        else:
            typer.echo(f"error: {result}", err=True)
    out.print(results_table(ok, title="Demo library: folder = the track's intended mood"))
