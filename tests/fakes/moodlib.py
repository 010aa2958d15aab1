"""A small stored library for front-end tests: a real MoodService on a SQLite file, without
loading the models.

The database holds eight classified tracks, two per mood, written through the Store as a scan
would write them. The service gets a stand-in for the engine (only its model versions are
read) and a resolver that finds nothing, so a query that is not a stored track fails the way
an unknown song does, and nothing reaches the network.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.service import MoodService
from bot.sources.errors import TrackNotFoundError
from bot.storage.engine import create_engine, make_sessionmaker
from bot.storage.migrate import run_coroutine, upgrade
from bot.storage.store import PredictionRecord, Store, TrackRecord

VERSIONS = {"cldnn": "mood-4q-cldnn-test", "ensemble": "mood-4q-ensemble-test"}
WEIGHTS = {"cldnn": 0.4, "ensemble": 0.6}
MUSIC = Path("/srv/music")


@dataclass(frozen=True)
class Song:
    title: str
    artist: str
    quadrant: str
    probabilities: dict[str, float]
    provider: str = "local"

    @property
    def location(self) -> str:
        if self.provider == "local":
            return str(MUSIC / self.artist / f"{self.title}.mp3")
        # A stable id (str hashes change with every process: one run in ten ended in 0,
        # which tests/test_feedback_export.py's fake resolver reads as "no preview").
        digest = int(hashlib.sha256(self.title.encode()).hexdigest(), 16)
        return f"https://www.deezer.com/track/{digest % 10**9}"


def _p(q1: float, q2: float, q3: float, q4: float) -> dict[str, float]:
    return {"Q1": q1, "Q2": q2, "Q3": q3, "Q4": q4}


SONGS: tuple[Song, ...] = (
    Song("Sunny Day", "The Brights", "Q1", _p(0.72, 0.10, 0.03, 0.15)),
    Song("Happy Hour", "Joy Band", "Q1", _p(0.64, 0.16, 0.05, 0.15), provider="deezer"),
    Song("Storm Warning", "Thunder", "Q2", _p(0.12, 0.70, 0.13, 0.05)),
    Song("Red Alert", "Sirens", "Q2", _p(0.10, 0.66, 0.16, 0.08)),
    Song("Rainy Window", "Grey Skies", "Q3", _p(0.04, 0.12, 0.71, 0.13)),
    Song("Lost Letters", "Sad Songs", "Q3", _p(0.05, 0.10, 0.65, 0.20)),
    Song("Still Water", "Calm Lake", "Q4", _p(0.10, 0.03, 0.17, 0.70)),
    Song("Slow Morning", "The Brights", "Q4", _p(0.15, 0.05, 0.12, 0.68)),
)


def _records(song: Song) -> tuple[TrackRecord, PredictionRecord]:
    p = song.probabilities
    track = TrackRecord(title=song.title, artist=song.artist, duration_s=200.0,
                        provider=song.provider,
                        provider_id=song.location if song.provider == "local" else song.title,
                        url=None if song.provider == "local" else song.location)
    # Three windows: the clip's mood, then a step toward calm, then the clip's mood again.
    calmer = {q: (v + (0.2 if q == "Q4" else 0.0)) / 1.2 for q, v in p.items()}
    timeline = [{"start": 5.0 * i, "end": 5.0 * i + 5.0, "quadrant": song.quadrant,
                 "probabilities": probs} for i, probs in enumerate((p, calmer, p))]
    prediction = PredictionRecord(
        models=dict(VERSIONS), weights=dict(WEIGHTS), probabilities=dict(p),
        quadrant=song.quadrant,
        valence=p["Q1"] + p["Q4"], arousal=p["Q1"] + p["Q2"], confidence=max(p.values()),
        timeline=timeline, elapsed_ms=12.0)
    return track, prediction


def build_library(path: Path) -> Path:
    """Create the database file at ``path`` with :data:`SONGS` (ids 1..8, in order)."""
    fill_library(f"sqlite+aiosqlite:///{path}")
    return path


def fill_library(url: str) -> None:
    """Migrate the (empty) database at ``url`` and store :data:`SONGS` (ids 1..8, in order)."""
    upgrade(url)

    async def fill() -> None:
        engine = create_engine(url)
        try:
            store = Store(make_sessionmaker(engine))
            for song in SONGS:
                await store.record_analysis(*_records(song))
        finally:
            await engine.dispose()

    run_coroutine(fill())  # also from a running event loop (an async fixture)


class StandInEngine:
    """What the service reads of the engine here: the live models' versions and weights."""

    versions = VERSIONS
    weights = WEIGHTS


class OfflineResolver:
    """A resolver that finds nothing (no network in these tests)."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    async def resolve(self, query: str) -> Any:
        self.queries.append(query)
        raise TrackNotFoundError("deezer", f"no track matches {query!r}")

    async def aclose(self) -> None:
        return None


def open_service(template: Path, folder: Path) -> MoodService:
    """A service on a copy of the ``template`` database in ``folder`` (tests may write)."""
    path = folder / "mood.db"
    shutil.copy(template, path)
    return service_on(path)


def service_on(path: Path | str) -> MoodService:
    """A service on the database file ``path``, or the database URL, as it is (a restarted
    bot's view of it)."""
    engine = create_engine(path if isinstance(path, str) else f"sqlite+aiosqlite:///{path}")
    service = MoodService(store=Store(make_sessionmaker(engine)),
                          resolver=OfflineResolver(),  # type: ignore[arg-type]
                          engine=StandInEngine())  # type: ignore[arg-type]
    service._databases.append(engine)
    return service
