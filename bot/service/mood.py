"""MoodService: the one object every front-end (CLI, Discord bot, MPD player) calls.

It resolves what a user named to a preview (:mod:`bot.sources`), answers from the database when
the live models already classified that track, and otherwise classifies it off the event loop
(a worker pool, or a worker thread with ``workers=1``), stores the result in one transaction,
and returns it. Two concurrent requests for the same track classify it once (single flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.service.errors import ServiceError, redact
from bot.service.library import ScanProgress, ScanReport, audio_files, storable
from bot.service.models_admin import ModelAdmin
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
from bot.storage.errors import ModelConflictError, StorageError
from bot.storage.migrate import check_schema, database_revision, upgrade_async
from bot.storage.models import Prediction, models_key
from bot.storage.store import Store, StoredAnalysis, file_fingerprint
from mer_models.config import AnalysisConfig
from mer_models.engine import MoodEngine
from mer_models.errors import MerError
from mer_models.pool import EngineSpec, WorkerPool
from mer_models.result import MoodResult

if TYPE_CHECKING:
    from bot.service.models_admin import ModelSet, Progress, RetrainResult
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
    models_admin : ModelAdmin, optional
        The live model set, retraining and rollback (None: the models cannot be changed
        while the service runs).
    """

    def __init__(self, *, store: Store, resolver: PreviewResolver, engine: MoodEngine,
                 pool: WorkerPool | None = None,
                 recommend: RecommendSettings | None = None,
                 models_admin: ModelAdmin | None = None) -> None:
        self.store = store
        self.recommend_settings = recommend or RecommendSettings.model_construct()
        self.resolver = resolver
        self.engine = engine
        self.models_admin = models_admin
        self._pool = pool
        #: Classifications running on each pool; a pool replaced by a reload stops when its
        #: last one finishes.
        self._pool_users: dict[WorkerPool, int] = {}
        self._retired_pools: set[WorkerPool] = set()
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

        Notes
        -----
        The models are the live set of the models home (``<data_dir>/models``, see
        :mod:`bot.service.models_admin`): the shipped weights until a retrain installs a set.
        ``MER_MODELS_DIR`` pins them: that folder is loaded and the home is ignored. A live
        set that no longer loads is logged and the base set is served instead.
        """
        from bot.service.database import database_errors, describe_database_error, open_engine

        db = open_engine(settings)
        try:
            if settings.storage.auto_upgrade or await database_revision(db) is None:
                await upgrade_async(db)  # a new, empty database is created at the head
            await check_schema(db)
            store = Store(make_sessionmaker(db))
            admin = ModelAdmin.from_settings(settings, store)
            await admin.recover()
            load = functools.partial(
                MoodEngine, config=AnalysisConfig(n_windows=settings.engine.n_windows),
                threads=settings.engine.threads, prefer_gpu=settings.engine.prefer_gpu)
            live = admin.live_dir()
            try:  # loads and hashes the models: off the loop
                engine = await asyncio.to_thread(load, live)
            except MerError as exc:
                if live == admin.base_dir:
                    raise
                logger.error("the live model set %s does not load (%s): serving %s", live,
                             exc, admin.base_dir)
                engine = await asyncio.to_thread(load, admin.base_dir)
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
                      recommend=settings.recommend, models_admin=admin)
        service._databases.append(db)
        return service

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the pool, close the sources and the database."""
        for pool in (*self._retired_pools, *([self._pool] if self._pool is not None else [])):
            await asyncio.to_thread(pool.shutdown)
        self._retired_pools.clear()
        await self.resolver.aclose()
        for db in self._databases:
            await db.dispose()

    @property
    def versions(self) -> dict[str, str]:
        """``{kind: name-version}`` of the live models."""
        return self.engine.versions

    @property
    def models_key(self) -> str:
        """The live models' key (:func:`~bot.storage.models.models_key`: versions and fusion
        weights): the stored predictions they made carry it."""
        return models_key(self.engine.versions, self.engine.weights)

    async def stored_model_sets(self) -> list[tuple[str, int]]:
        """Every model set with stored moods: its key and number of predictions, the most
        recently used first (the live set is :attr:`models_key`)."""
        return await self.store.prediction_keys()

    async def prune_predictions(self) -> int:
        """Delete the stored moods of every model set but the live one; their number.

        Tracks, sources, features, feedback and history stay; should older models come back,
        their tracks are classified again on request.

        Raises
        ------
        ServiceError
            The database refused the write; nothing was deleted.
        """
        try:
            return await self.store.prune_predictions(self.models_key)
        except StorageError as exc:
            raise ServiceError(str(exc)) from exc

    @functools.cached_property
    def recommendations(self) -> Recommendations:
        """Suggestions and journeys over the stored library."""
        from bot.service.recommendations import Recommendations

        return Recommendations(self, settings=self.recommend_settings)

    # --- the live models -------------------------------------------------------------------

    async def reload_models(self) -> dict[str, str]:
        """Load the live set again (after a change on disk) and swap it in.

        The new engine is built off the event loop; classifications under way finish on the
        old one (and its worker pool), new ones use the new one.

        Returns
        -------
        dict
            ``{kind: name-version}`` of the models now live.

        Raises
        ------
        ServiceError
            The live set does not load; the models served before stay.
        """
        folder = (self.models_admin.live_dir() if self.models_admin is not None
                  else self.engine.models_dir)
        await self._swap_engine(await self._load_engine(folder))
        return self.versions

    async def retrain_models(self, *, requested_by: str, progress: Progress | None = None
                             ) -> RetrainResult:
        """Retrain, gate, install and serve the new models (:meth:`ModelAdmin.retrain`).

        The new set is loaded before it goes live; when it does, it is swapped in as by
        :meth:`reload_models`.

        Raises
        ------
        ServiceError
            The models cannot be changed here (no admin, pinned), or a retrain is running.
        """
        admin = self._admin()
        loaded: list[MoodEngine] = []

        async def load(folder: Path) -> None:
            loaded.append(await self._load_engine(folder))

        result = await admin.retrain(requested_by=requested_by, progress=progress, verify=load)
        if result.installed:
            await self._swap_engine(loaded[-1])
        return result

    async def rollback_models(self) -> ModelSet:
        """Serve the previous model set again (:meth:`ModelAdmin.rollback`).

        Raises
        ------
        ServiceError
            There is no earlier set, it does not load, or the models cannot be changed.
        """
        admin = self._admin()
        loaded: list[MoodEngine] = []

        async def load(folder: Path) -> None:
            loaded.append(await self._load_engine(folder))

        live = await admin.rollback(verify=load)
        await self._swap_engine(loaded[-1])
        return live

    def _admin(self) -> ModelAdmin:
        if self.models_admin is None:
            raise ServiceError("The models cannot be changed while this service runs.")
        return self.models_admin

    async def _load_engine(self, folder: Path) -> MoodEngine:
        """An engine with the current one's settings on the models of ``folder``."""
        try:
            return await asyncio.to_thread(
                MoodEngine, folder, config=self.engine.config, threads=self.engine.threads,
                prefer_gpu=self.engine.prefer_gpu)
        except MerError as exc:
            raise ServiceError(f"models: {exc}") from exc

    async def _swap_engine(self, engine: MoodEngine) -> None:
        old_pool = self._pool
        self.engine = engine
        if old_pool is not None:
            self._pool = WorkerPool(EngineSpec.of(engine), old_pool.workers)
            if self._pool_users.get(old_pool, 0):
                self._retired_pools.add(old_pool)  # its last classification stops it
            else:
                await asyncio.to_thread(old_pool.shutdown)
        logger.info("serving models %s", ", ".join(self.versions.values()))
        await _register_live_models(self.store, engine)

    def _release_pool(self, pool: WorkerPool) -> None:
        self._pool_users[pool] -= 1
        if self._pool_users[pool] == 0:
            del self._pool_users[pool]
            if pool in self._retired_pools:
                self._retired_pools.discard(pool)
                pool.shutdown(wait=False)

    @contextlib.asynccontextmanager
    async def transaction(self, what: str) -> AsyncIterator[AsyncSession]:
        """A write transaction for the front-ends' own tables (a guild's queue, its settings).

        :meth:`Store.transaction <bot.storage.store.Store.transaction>`, with the database
        refusing the write (locked past the busy timeout, disk full) said as one
        :class:`ServiceError` naming ``what``; nothing of the transaction is stored.
        """
        try:
            async with self.store.transaction(what) as session:
                yield session
        except StorageError as exc:
            raise ServiceError(str(exc)) from exc

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
        stored = await self.store.find_analysis(Provider.LOCAL.value, key, self.models_key)
        if (stored is not None and stored.prediction is not None
                and stored.fingerprint == file_fingerprint(path)):
            return _cached(stored, stored.prediction, str(path), Provider.LOCAL.value)
        return await self._mood_of(await self._local.preview(path))

    async def _mood_of(self, preview: Preview) -> TrackMood:
        record = track_record(preview)
        key = (record.provider, record.provider_id)
        running = self._in_flight.get(key)
        if running is not None:  # single flight: wait for the look-up or classification
            return await asyncio.shield(running)
        # In flight from before the look-up: a look-up that began before another request
        # stored the track, and ended after that one had left, classified it again.
        future: asyncio.Future[TrackMood] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            stored = await self.store.find_analysis(*key, self.models_key)
            if (stored is not None and stored.prediction is not None
                    and stored.fingerprint == record.fingerprint):
                mood = _cached(stored, stored.prediction, preview.track.display_name,
                               preview.provider)
            else:
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
        pool = self._pool
        if pool is None:
            outcome = await asyncio.to_thread(self.engine.try_classify, str(preview.path))
        else:
            self._pool_users[pool] = self._pool_users.get(pool, 0) + 1
            try:
                outcome = await pool.classify(str(preview.path))
            finally:
                self._release_pool(pool)
        # The caller knows what it asked for: the message says only what went wrong.
        if isinstance(outcome, MerError):
            raise ServiceError(getattr(outcome, "reason", None) or str(outcome)) from outcome
        if isinstance(outcome, Exception):
            raise ServiceError("internal error while classifying") from outcome
        try:
            stored = await self.store.record_analysis(
                track_record(preview), prediction_record(outcome),
                feature_records(outcome, info))
        except StorageError as exc:  # locked past the busy timeout, disk full, ...
            raise ServiceError(f"the result could not be stored: {exc}") from exc
        track = stored.track
        return TrackMood(track.id, track.title, track.artist or "", preview.provider,
                         outcome, cached=False)


def _cached(stored: StoredAnalysis, prediction: Prediction, name: str,
            provider: str) -> TrackMood:
    track = stored.track
    return TrackMood(track.id, track.title, track.artist or "", provider,
                     mood_result(prediction, name), cached=True)


async def _register_live_models(store: Store, engine: MoodEngine) -> None:
    """Record the loaded models in the registry, marked live (and no other)."""
    ids = []
    for card in engine.cards:
        try:
            row = await store.register_model(card.name, card.version, card.kind, card.sha256,
                                             card.metrics, live=True)
        except ModelConflictError as exc:  # same name-version, other file: keep serving
            logger.warning("model registry: %s", exc)
            continue
        ids.append(row.id)
    await store.keep_live(ids)
