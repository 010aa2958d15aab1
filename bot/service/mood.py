"""MoodService: the one object the CLI and the Discord bot use.

It resolves what a user named to a preview (bot.sources), answers from the database when the
live models already classified that track, and otherwise classifies it off the event loop (a
process pool, or a worker thread with ``workers=1``), stores the result, and returns it. Two
concurrent requests for the same track classify it once (single flight).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from bot.db.engine import create_engine, make_sessionmaker
from bot.db.errors import ModelConflictError
from bot.db.migrate import check_schema, upgrade_async
from bot.db.models import Prediction, Track
from bot.db.store import Store, file_fingerprint
from bot.settings import Settings
from bot.sources.errors import SourceError
from bot.sources.local import AUDIO_EXTENSIONS, LocalSource
from bot.sources.models import Preview, TrackInfo
from bot.sources.resolver import PreviewResolver, ResolverConfig
from mer_models.audio import AudioSource
from mer_models.config import AnalysisConfig
from mer_models.engine import MoodEngine, classify_in_worker, init_worker
from mer_models.errors import MerError
from mer_models.features import FEATURES_VERSION
from mer_models.result import MoodResult, WindowResult

logger = logging.getLogger(__name__)

#: bot.sources names the provider that served metadata; the database names the source kind.
_DB_PROVIDER = {"spotify": "spotify", "deezer": "deezer", "itunes": "itunes",
                "ytdlp": "youtube", "http": "url", "local": "local"}


class ServiceError(Exception):
    """A request could not be served; the message is safe to show to a user."""


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
        Who served the preview (``deezer``, ``itunes``, ``ytdlp``, ``local``, ...), or
        ``"cache"`` when the answer came from the database.
    result : MoodResult
        The mood.
    cached : bool
        True when no classification ran for this request.
    """

    track_id: int
    title: str
    artist: str
    provider: str
    result: MoodResult
    cached: bool


@dataclass
class ScanReport:
    """What ``scan`` did: files classified, skipped as unchanged, and failures by path."""

    classified: int = 0
    unchanged: int = 0
    failed: dict[str, str] = field(default_factory=dict)


class MoodService:
    """Resolve, classify once, remember.

    Parameters
    ----------
    settings : Settings
        Application settings.
    store : Store
        Database access.
    resolver : PreviewResolver
        Track resolution and previews.
    engine : MoodEngine
        The live models (their versions key the stored predictions).
    executor : Executor or None
        Where classification runs: a process pool set up with
        :func:`mer_models.engine.init_worker`, or None for a worker thread using ``engine``.
    """

    def __init__(self, *, settings: Settings, store: Store, resolver: PreviewResolver,
                 engine: MoodEngine, executor: Executor | None = None) -> None:
        self.settings = settings
        self.store = store
        self.resolver = resolver
        self.engine = engine
        self._executor = executor
        self._workers = getattr(executor, "_max_workers", 1) if executor else 1
        self._local = LocalSource()
        self._in_flight: dict[int, asyncio.Future[TrackMood]] = {}
        self._disposers: list[Callable[[], Awaitable[None]]] = []

    @classmethod
    async def create(cls, settings: Settings, *, allow_local_files: bool = False,
                     workers: int | None = None) -> Self:
        """Build the service from settings: database (schema checked), models, sources, pool.

        Parameters
        ----------
        settings : Settings
            Application settings.
        allow_local_files : bool
            Accept local paths as queries (the CLI, never the Discord bot).
        workers : int, optional
            Classification processes (default ``settings.workers``, 0 = one per core);
            1 classifies in a thread of this process.

        Raises
        ------
        SchemaOutOfDateError
            The database is not at the code's revision and ``auto_upgrade`` is off.
        MerError
            The models cannot be loaded.
        """
        db = create_engine(settings.resolved_database_url(),
                           busy_timeout_ms=settings.sqlite_busy_timeout_ms)
        try:
            if settings.auto_upgrade:
                await upgrade_async(db)
            await check_schema(db)
            config = AnalysisConfig(n_windows=settings.n_windows)
            engine = await asyncio.to_thread(  # loads and hashes the models: off the loop
                MoodEngine, settings.models_dir, config=config, threads=settings.threads,
                prefer_gpu=settings.prefer_gpu)
        except BaseException:
            await db.dispose()
            raise
        count = workers if workers is not None else settings.workers
        count = count or os.cpu_count() or 1
        executor: Executor | None = None
        if count > 1:
            executor = ProcessPoolExecutor(
                max_workers=count, mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker,
                initargs=(engine.models_dir, engine.config, settings.prefer_gpu))
        resolver = PreviewResolver(ResolverConfig.from_settings(
            settings, allow_local_files=allow_local_files))
        service = cls(settings=settings, store=Store(make_sessionmaker(db)), resolver=resolver,
                      engine=engine, executor=executor)
        service._disposers.append(db.dispose)
        await service._register_live_models()
        return service

    async def _register_live_models(self) -> None:
        """Record the loaded models in the registry, marked live."""
        for card in self.engine.cards:
            try:
                await self.store.register_model(card.name, card.version, card.kind,
                                                card.sha256, card.metrics, live=True)
            except ModelConflictError as exc:  # same name-version, other file: keep serving
                logger.warning("model registry: %s", exc)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the pool, close the sources and the database."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        await self.resolver.aclose()
        for dispose in self._disposers:
            await dispose()

    @property
    def versions(self) -> dict[str, str | None]:
        """Versions of the live models."""
        return self.engine.versions

    async def classify(self, query: str) -> TrackMood:
        """Mood of the track a query names (search text, URL or, for the CLI, a file).

        Raises
        ------
        ServiceError
            No source could provide the track, or its audio cannot be analysed; the message
            says why.
        """
        try:
            preview = await self.resolver.resolve(query)
        except SourceError as exc:
            raise ServiceError(str(exc)) from exc
        return await self._classify_preview(preview)

    async def scan(self, directory: Path, *,
                   progress: Callable[[int, int], None] | None = None) -> ScanReport:
        """Index a local library: one prediction per audio file for the live models.

        Unchanged files (same size and modification time) that already have a prediction
        are skipped, so a rescan costs only a directory walk.

        Parameters
        ----------
        directory : Path
            Folder to walk (recursively).
        progress : callable, optional
            Called with (done, total) after each file.
        """
        if not directory.is_dir():
            raise ServiceError(f"{directory}: not a directory")
        paths = await asyncio.to_thread(audio_files, directory)  # a big library: not on the loop
        report = ScanReport()
        done = 0

        async def one(path: Path) -> None:
            nonlocal done
            try:
                if await self._unchanged(path):
                    report.unchanged += 1
                else:
                    await self._classify_preview(await self._local.preview(path))
                    report.classified += 1
            except (ServiceError, SourceError) as exc:
                report.failed[str(path)] = str(exc)
            done += 1
            if progress:
                progress(done, len(paths))

        # Enough files in flight to keep every worker busy, not the whole library at once.
        limit = asyncio.Semaphore(2 * self._workers)

        async def bounded(path: Path) -> None:
            async with limit:
                await one(path)

        await asyncio.gather(*(bounded(p) for p in paths))
        return report

    async def _unchanged(self, path: Path) -> bool:
        stored = await self.store.local_fingerprint(path)
        if stored is None or stored != file_fingerprint(path):
            return False
        track = await self.store.find_track_by_source("local", str(path.resolve()))
        return track is not None and await self._stored(track.id) is not None

    async def _stored(self, track_id: int) -> Prediction | None:
        versions = self.versions
        return await self.store.get_prediction(track_id, versions["cldnn"],
                                               versions["ensemble"])

    async def _classify_preview(self, preview: Preview) -> TrackMood:
        info = preview.track
        track = await self._track_row(info, preview)
        stored = await self._stored(track.id)
        if stored is not None:
            return _from_row(track, stored, info.display_name)
        running = self._in_flight.get(track.id)
        if running is not None:  # single flight: wait for the classification under way
            return await asyncio.shield(running)
        future: asyncio.Future[TrackMood] = asyncio.get_running_loop().create_future()
        self._in_flight[track.id] = future
        try:
            mood = await self._run_classification(track, preview)
            future.set_result(mood)
            return mood
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: waiters re-raise it, nobody logs it twice
            raise
        finally:
            del self._in_flight[track.id]

    async def _run_classification(self, track: Track, preview: Preview) -> TrackMood:
        info = preview.track
        outcome = await self._classify_audio(str(preview.path))
        if isinstance(outcome, MerError):
            raise ServiceError(f"{info.display_name}: {_reason(outcome)}") from outcome
        if isinstance(outcome, Exception):
            raise ServiceError(f"{info.display_name}: internal error while classifying"
                               ) from outcome
        row = await self.store.save_prediction(track.id, outcome)
        if outcome.descriptors:
            await self.store.save_features(track.id, "descriptors", str(FEATURES_VERSION),
                                           outcome.descriptors)
        if info.spotify_features:
            await self.store.save_features(track.id, "spotify", "1", info.spotify_features)
        if row.models != outcome.models:  # pragma: no cover - stored by a concurrent process
            return _from_row(track, row, info.display_name)
        return TrackMood(track.id, track.title, track.artist or "", preview.provider,
                         outcome, cached=False)

    async def _classify_audio(self, source: AudioSource) -> MoodResult | Exception:
        loop = asyncio.get_running_loop()
        if self._executor is None:
            return await asyncio.to_thread(self.engine.try_classify, source)
        return await loop.run_in_executor(self._executor, classify_in_worker, source)

    async def _track_row(self, info: TrackInfo, preview: Preview) -> Track:
        provider = _DB_PROVIDER.get(info.provider, "url")
        fingerprint = None
        provider_id = info.provider_id
        previous = None
        if provider == "local":
            provider_id = str(Path(info.provider_id).resolve())
            fingerprint = file_fingerprint(provider_id)
            previous = await self.store.local_fingerprint(provider_id)
        track = await self.store.upsert_track(
            info.title, info.artist or None, info.album, info.duration_s, info.isrc,
            provider, provider_id, info.url, fingerprint,
            served_preview=preview.provider == info.provider)
        if previous is not None and previous != fingerprint:
            # The file changed since it was analysed: its stored mood no longer applies.
            await self.store.forget_analysis(track.id)
        return track


def _reason(error: MerError) -> str:
    return getattr(error, "reason", None) or str(error)


def _from_row(track: Track, row: Prediction, name: str) -> TrackMood:
    windows = [WindowResult(start=w["start"], end=w["end"], probabilities=w["probabilities"])
               for w in row.timeline]
    duration = windows[-1].end if windows else 0.0
    result = MoodResult(input=name, probabilities=dict(row.probabilities), windows=windows,
                        models=row.models, timings_ms={"total": row.elapsed_ms},
                        duration=duration)
    return TrackMood(track.id, track.title, track.artist or "", "cache", result, cached=True)


def audio_files(directory: Path) -> list[Path]:
    """Audio files below a folder, in a stable order."""
    return sorted(p for p in directory.rglob("*")
                  if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
