"""MoodService: the one object every front-end (CLI, Discord bot, MPD player) calls.

It resolves what a user named to a preview (:mod:`bot.sources`), answers from the database when
the live models already classified that track, and otherwise classifies it off the event loop
(a worker pool, or a worker thread with ``workers=1``), stores the result in one transaction,
and returns it. Two concurrent requests for the same track classify it once (single flight).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.service.errors import ServiceError, redact
from bot.service.library import ScanProgress, ScanReport, audio_files, storable
from bot.service.records import (
    feature_records,
    mood_result,
    prediction_record,
    track_record,
)
from bot.settings import RecommendSettings, Settings
from bot.sources.errors import SourceError
from bot.sources.local import LocalSource
from bot.sources.models import Preview, Provider
from bot.sources.resolver import PreviewResolver, ResolverConfig
from bot.storage.engine import make_sessionmaker
from bot.storage.errors import ModelConflictError
from bot.storage.migrate import check_schema, database_revision, upgrade_async
from bot.storage.models import Prediction
from bot.storage.store import Store, StoredAnalysis, file_fingerprint
from mer_models.config import AnalysisConfig
from mer_models.engine import MoodEngine
from mer_models.errors import MerError
from mer_models.pool import EngineSpec, WorkerPool
from mer_models.result import MoodResult

if TYPE_CHECKING:
    from bot.service.recommendations import Recommendations

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackMood:
    """A track with its mood, as the service answers.

    Attributes
    ----------
    track_id : int
        Database id of the track.
    title, artist : str
        Display metadata.
    provider : str
        Who served the audio this time (``deezer``, ``itunes``, ``ytdlp``, ``url``,
        ``local``).
    result : MoodResult
        The mood; its ``input`` is what the caller asked for (URL credentials redacted).
    cached : bool
        True when the answer came from the database (no classification ran).
    """

    track_id: int
    title: str
    artist: str
    provider: str
    result: MoodResult
    cached: bool


class MoodService:
    """Resolve, classify once, remember.

    Build it with :meth:`create`; the constructor takes ready parts (tests build their own).

    Parameters
    ----------
    store : Store
        Database access.
    resolver : PreviewResolver
        Track resolution and previews.
    engine : MoodEngine
        The live models (their versions key the stored predictions).
    pool : WorkerPool or None
        Worker processes for classification; None classifies in a thread with ``engine``.
    recommend : RecommendSettings, optional
        History window and catalogue top-up of :attr:`recommendations` (default: the
        declared defaults).
    """

    def __init__(self, *, store: Store, resolver: PreviewResolver, engine: MoodEngine,
                 pool: WorkerPool | None = None,
                 recommend: RecommendSettings | None = None) -> None:
        self.store = store
        self.recommend_settings = recommend or RecommendSettings.model_construct()
        self.resolver = resolver
        self.engine = engine
        self._pool = pool
        self._local = LocalSource()
        self._in_flight: dict[tuple[str, str], asyncio.Future[TrackMood]] = {}
        self._databases: list[AsyncEngine] = []

    @classmethod
    async def create(cls, settings: Settings, *, allow_local_files: bool = False,
                     workers: int | None = None) -> Self:
        """Build the service from settings: database (schema checked), models, sources, pool.

        Parameters
        ----------
        settings : Settings
            Application settings.
        allow_local_files : bool
            Accept local paths as queries (the CLI and the player, never the Discord bot).
        workers : int, optional
            Classification processes (default ``settings.engine.workers``, 0 = one per
            core); 1 classifies in a thread of this process.

        Raises
        ------
        ServiceError
            The database cannot be opened or is not at the code's schema, or the models
            cannot be loaded (one line saying which and why). An empty database gets the
            schema; an out-of-date one is upgraded only with ``storage.auto_upgrade``.
        """
        from bot.service.database import database_errors, describe_database_error, open_engine

        db = open_engine(settings)
        try:
            if settings.storage.auto_upgrade or await database_revision(db) is None:
                await upgrade_async(db)  # a new, empty database is created at the head
            await check_schema(db)
            store = Store(make_sessionmaker(db))
            engine = await asyncio.to_thread(  # loads and hashes the models: off the loop
                MoodEngine, settings.engine.models_dir,
                config=AnalysisConfig(n_windows=settings.engine.n_windows),
                threads=settings.engine.threads, prefer_gpu=settings.engine.prefer_gpu)
            await _register_live_models(store, engine)
        except MerError as exc:
            await db.dispose()
            raise ServiceError(f"models: {exc}") from exc
        except database_errors() as exc:
            await db.dispose()
            raise ServiceError(describe_database_error(settings, exc)) from exc
        except BaseException:
            await db.dispose()
            raise
        count = workers if workers is not None else settings.engine.workers
        count = count or os.cpu_count() or 1
        pool = WorkerPool(EngineSpec.of(engine), count) if count > 1 else None
        resolver = PreviewResolver(ResolverConfig.from_settings(
            settings, allow_local_files=allow_local_files))
        service = cls(store=store, resolver=resolver, engine=engine, pool=pool,
                      recommend=settings.recommend)
        service._databases.append(db)
        return service

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the pool, close the sources and the database."""
        if self._pool is not None:
            await asyncio.to_thread(self._pool.shutdown)
        await self.resolver.aclose()
        for db in self._databases:
            await db.dispose()

    @property
    def versions(self) -> dict[str, str]:
        """``{kind: name-version}`` of the live models."""
        return self.engine.versions

    @functools.cached_property
    def recommendations(self) -> Recommendations:
        """Suggestions and journeys over the stored library."""
        from bot.service.recommendations import Recommendations

        return Recommendations(self, settings=self.recommend_settings)

    @property
    def workers(self) -> int:
        """Classifications that can run at once."""
        return self._pool.workers if self._pool is not None else 1

    async def classify(self, query: str) -> TrackMood:
        """Mood of the track a query names: search text, a URL or (CLI, player) a file.

        Raises
        ------
        ServiceError
            The query is empty, no source could provide the track, or its audio cannot be
            analysed; the message says why.
        """
        if not query.strip():
            raise ServiceError("empty query: give a file, a URL or \"Artist - Title\"")
        try:
            preview = await self.resolver.resolve(query)
        except SourceError as exc:
            raise ServiceError(exc.reason) from exc
        mood = await self._mood_of(preview)
        return dataclasses.replace(mood, result=dataclasses.replace(mood.result,
                                                                    input=redact(query)))

    async def classify_preview(self, preview: Preview) -> TrackMood:
        """Mood of a preview already downloaded (a catalogue search result): as
        :meth:`classify`, stored, single flight.

        Raises
        ------
        ServiceError
            Its audio cannot be analysed.
        """
        return await self._mood_of(preview)

    async def scan(self, directory: Path, *, progress: ScanProgress | None = None
                   ) -> ScanReport:
        """Index a local library: one prediction per audio file for the live models.

        Unchanged files (same size and modification time) that already have a prediction
        are skipped, so a rescan costs a directory walk and one database read per file. A
        file that fails (unreadable, not audio, deleted meanwhile) is reported and the scan
        goes on; a cancelled scan keeps what it stored, so the next one resumes.

        Parameters
        ----------
        directory : Path
            Folder to walk (recursively).
        progress : callable, optional
            Called with (done, total, path) after each file.

        Raises
        ------
        ServiceError
            ``directory`` is not a folder.
        """
        if not directory.is_dir():
            raise ServiceError(f"{storable(str(directory))}: not a directory")
        paths = await asyncio.to_thread(audio_files, directory)  # a big library: not on the loop
        report = ScanReport(total=len(paths))
        quadrants: Counter[str] = Counter()

        async def one(path: Path) -> None:
            try:
                mood = await self._scan_file(path)
            except SourceError as exc:
                report.failed[storable(str(path))] = exc.reason
            except ServiceError as exc:
                report.failed[storable(str(path))] = str(exc)
            except OSError as exc:  # deleted or unreadable since the walk
                report.failed[storable(str(path))] = exc.strerror or type(exc).__name__
            except Exception as exc:  # a bug: log it, keep scanning
                logger.exception("scanning %s failed", storable(str(path)))
                report.failed[storable(str(path))] = f"internal error ({type(exc).__name__})"
            else:
                quadrants[mood.result.quadrant.value] += 1
                if mood.cached:
                    report.unchanged += 1
                else:
                    report.classified += 1
            if progress:
                progress(report.done, report.total, path)

        # Enough files in flight to keep every worker busy, not the whole library at once.
        limit = asyncio.Semaphore(2 * self.workers)

        async def bounded(path: Path) -> None:
            async with limit:
                await one(path)

        try:
            await asyncio.gather(*(bounded(p) for p in paths))
        finally:
            report.quadrants = dict(sorted(quadrants.items()))
        return report

    async def _scan_file(self, path: Path) -> TrackMood:
        key = storable(str(path.resolve()))
        stored = await self.store.find_analysis(Provider.LOCAL.value, key, self.versions)
        if (stored is not None and stored.prediction is not None
                and stored.fingerprint == file_fingerprint(path)):
            return _cached(stored, stored.prediction, str(path), Provider.LOCAL.value)
        return await self._mood_of(await self._local.preview(path))

    async def _mood_of(self, preview: Preview) -> TrackMood:
        record = track_record(preview)
        key = (record.provider, record.provider_id)
        stored = await self.store.find_analysis(*key, self.versions)
        if (stored is not None and stored.prediction is not None
                and stored.fingerprint == record.fingerprint):
            return _cached(stored, stored.prediction, preview.track.display_name,
                           preview.provider)
        running = self._in_flight.get(key)
        if running is not None:  # single flight: wait for the classification under way
            return await asyncio.shield(running)
        future: asyncio.Future[TrackMood] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            mood = await self._classify_and_store(preview)
            future.set_result(mood)
            return mood
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: waiters re-raise it, nobody logs it twice
            raise
        finally:
            del self._in_flight[key]

    async def _classify_and_store(self, preview: Preview) -> TrackMood:
        info = preview.track
        if self._pool is None:
            outcome = await asyncio.to_thread(self.engine.try_classify, str(preview.path))
        else:
            outcome = await self._pool.classify(str(preview.path))
        # The caller knows what it asked for: the message says only what went wrong.
        if isinstance(outcome, MerError):
            raise ServiceError(getattr(outcome, "reason", None) or str(outcome)) from outcome
        if isinstance(outcome, Exception):
            raise ServiceError("internal error while classifying") from outcome
        stored = await self.store.record_analysis(
            track_record(preview), prediction_record(outcome), feature_records(outcome, info))
        track = stored.track
        return TrackMood(track.id, track.title, track.artist or "", preview.provider,
                         outcome, cached=False)


def _cached(stored: StoredAnalysis, prediction: Prediction, name: str,
            provider: str) -> TrackMood:
    track = stored.track
    return TrackMood(track.id, track.title, track.artist or "", provider,
                     mood_result(prediction, name), cached=True)


async def _register_live_models(store: Store, engine: MoodEngine) -> None:
    """Record the loaded models in the registry, marked live."""
    for card in engine.cards:
        try:
            await store.register_model(card.name, card.version, card.kind, card.sha256,
                                       card.metrics, live=True)
        except ModelConflictError as exc:  # same name-version, other file: keep serving
            logger.warning("model registry: %s", exc)
