"""The ``mer`` command line: classify audio files, show the model cards, try the demo library,
manage the database schema (``mer db``)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from bot.settings import get_settings
from mer_models.card import ModelCard, find_cards
from mer_models.config import AnalysisConfig
from mer_models.errors import MerError
from mer_models.moods import Quadrant
from mer_models.result import MoodResult

if TYPE_CHECKING:
    from mer_models.engine import MoodEngine

app = typer.Typer(help="Mood of music: classify audio into happy, tense, sad or calm.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="The database schema: upgrade, downgrade, show the revision.",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")
out = Console()

#: Batches at least this large are spread over worker processes (each costs ~2 s to start).
_POOL_THRESHOLD = 8


def _engine(models_dir: Path | None, windows: int | None) -> MoodEngine:
    from mer_models.engine import MoodEngine

    settings = get_settings()
    config = AnalysisConfig(n_windows=windows or settings.n_windows)
    return MoodEngine(models_dir or settings.models_dir, config=config,
                      threads=settings.threads, prefer_gpu=settings.prefer_gpu)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def _table(results: list[MoodResult], title: str | None = None) -> Table:
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


def _classify_all(paths: list[Path], models_dir: Path | None, windows: int | None,
                  workers: int | None) -> list[MoodResult | Exception]:
    try:
        engine = _engine(models_dir, windows)
    except MerError as exc:
        raise _fail(str(exc)) from exc
    workers = workers if workers is not None else (get_settings().workers or None)
    if len(paths) >= _POOL_THRESHOLD and workers != 1:
        return engine.classify_many([str(p) for p in paths], workers=workers)
    return engine.classify_many([str(p) for p in paths], workers=1)


@app.command()
def classify(
    paths: Annotated[list[Path], typer.Argument(help="Audio files (mp3, wav, flac, ogg, opus, "
                                                     "m4a, ...).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per input per line.")
                       ] = False,
    models_dir: Annotated[Path | None, typer.Option("--models", help="Folder of model cards.")
                          ] = None,
    windows: Annotated[int | None, typer.Option(min=1, max=64, help="Windows per clip.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes for large "
                                                           "batches (default: all cores).")
                       ] = None,
) -> None:
    """Classify the mood of audio files."""
    results = _classify_all(paths, models_dir, windows, workers)
    ok = [r for r in results if isinstance(r, MoodResult)]
    for result in results:
        if isinstance(result, MoodResult):
            if as_json:
                print(json.dumps(result.to_json()), flush=True)
        else:
            typer.echo(f"error: {result}", err=True)
    if ok and not as_json:
        out.print(_table(ok))
    if len(ok) != len(results):
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
        raise _fail(str(exc)) from exc
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
        raise _fail(f"{folder}: no Spotify-feature model (train it: python -m train "
                    "reproduce-seed)")
    text = sys.stdin.read() if features == "-" else features
    try:
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError("expected a JSON object")
        probabilities = SpotifyFeatureModel(card).predict(values)
    except (ValueError, MerError) as exc:
        raise _fail(f"spotify features: {exc}") from exc
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
        raise _fail("the demo library is not installed: pip install immich-memories-music"
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
    out.print(_table(ok, title="Demo library: folder = the track's intended mood"))


def _database() -> tuple[str, str]:
    """The database URL from the settings, and its printable form (password hidden)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = get_settings().resolved_database_url()
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError as exc:
        raise _fail(f"MER_DATABASE_URL: {exc}") from exc
    return url, shown


def _migrate_errors() -> tuple[type[Exception], ...]:
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from bot.db.errors import StorageError

    return (StorageError, CommandError, SQLAlchemyError, ImportError, OSError)


def _revision_label(revision: str | None, head: str) -> str:
    if revision is None:
        return "no schema (empty database)"
    return f"{revision} (head)" if revision == head else f"{revision} (head is {head})"


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or upgrade the database schema (MER_DATABASE_URL, or mood.db in MER_DATA_DIR)."""
    from bot.db import migrate

    url, shown = _database()
    try:
        before = migrate.current_revision(url)
        migrate.upgrade(url, revision, busy_timeout_ms=get_settings().sqlite_busy_timeout_ms)
        after = migrate.current_revision(url)
        head = migrate.head_revision()
    except _migrate_errors() as exc:
        raise _fail(f"{shown}: upgrade to {revision} failed: {exc}") from exc
    if before == after:
        typer.echo(f"{shown}: already at {_revision_label(after, head)}")
    else:
        typer.echo(f"{shown}: upgraded from {before or 'empty'} to {_revision_label(after, head)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision: an id, base (drops every "
                                                 "table and its data), or -- -1 (one step).")],
) -> None:
    """Downgrade the database schema."""
    from bot.db import migrate

    url, shown = _database()
    try:
        before = migrate.current_revision(url)
        migrate.downgrade(url, revision, busy_timeout_ms=get_settings().sqlite_busy_timeout_ms)
        after = migrate.current_revision(url)
        head = migrate.head_revision()
    except _migrate_errors() as exc:
        raise _fail(f"{shown}: downgrade to {revision} failed: {exc}") from exc
    if before == after:
        typer.echo(f"{shown}: already at {_revision_label(after, head)}")
    else:
        typer.echo(f"{shown}: downgraded from {before} to {_revision_label(after, head)}")


@db_app.command("current")
def db_current() -> None:
    """Show the revision the database schema is at, and the one the code needs."""
    from bot.db import migrate

    url, shown = _database()
    try:
        current = migrate.current_revision(url)
        head = migrate.head_revision()
    except _migrate_errors() as exc:
        raise _fail(f"{shown}: {exc}") from exc
    typer.echo(f"{shown}: {_revision_label(current, head)}")


def main() -> None:
    """Entry point with logging configured."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
