"""The storage operations the service needs.

A classification is written in one transaction (:meth:`Store.record_analysis`: track, source,
prediction, features) and a lookup is one read (:meth:`Store.find_analysis`). Writes that may
race (the same track found by two requests, the same prediction computed by two workers) rely
on the database's unique constraints: the loser's transaction is retried and finds the
winner's rows, so callers never see duplicates or errors.

Nothing here knows the models: the service maps its results to the plain records below.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.errors import InvalidRecordError, ModelConflictError, NotFoundError, StorageError
from bot.storage.models import (
    EVENT_KINDS,
    FEATURE_KINDS,
    JOB_STATUSES,
    QUADRANT_VALUES,
    AudioFeatures,
    Feedback,
    ModelVersion,
    Prediction,
    RetrainJob,
    Track,
    TrackEvent,
    TrackSource,
    models_key,
    utcnow,
)

#: Attempts of a transaction that lost a race (each retry finds the winner's rows).
_ATTEMPTS = 3
_ISRC = re.compile(r"[A-Z]{2}[A-Z0-9]{3}[0-9]{7}")
#: Features computed from the audio: they go when the audio changes.
_AUDIO_FEATURE_KINDS = ("descriptors",)
#: Longest history scope (``track_events.scope``).
_MAX_SCOPE = 128


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """The fingerprint of a local file: ``"size:mtime_ns"`` (changes when it is rewritten)."""
    stat = os.stat(path)
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def normalize_isrc(isrc: str | None) -> str | None:
    """An ISRC in its 12-character form (``"US-RC1-76-07839"`` -> ``"USRC17607839"``).

    Returns None when missing or malformed (a malformed code would only match wrongly).
    """
    if not isrc:
        return None
    code = isrc.replace("-", "").replace(" ", "").strip().upper()
    return code if _ISRC.fullmatch(code) else None


@dataclass(frozen=True, kw_only=True)
class TrackRecord:
    """A track as one provider knows it, ready to store.

    ``provider_id`` is the provider's id (for ``local`` the file's absolute path);
    ``fingerprint`` is set for local files (see :func:`file_fingerprint`); ``served_preview``
    says whether the provider only serves a preview clip of the track.
    """

    title: str
    artist: str | None = None
    album: str | None = None
    duration_s: float | None = None
    isrc: str | None = None
    provider: str
    provider_id: str
    url: str | None = None
    fingerprint: str | None = None
    served_preview: bool = False


@dataclass(frozen=True, kw_only=True)
class PredictionRecord:
    """A mood to store: the columns of :class:`~bot.storage.models.Prediction`."""

    models: dict[str, str]
    #: The fusion weight of each model (part of the prediction's key with ``models``).
    weights: dict[str, float]
    probabilities: dict[str, float]
    quadrant: str
    valence: float
    arousal: float
    confidence: float
    timeline: list[dict[str, Any]]
    embedding: list[float] | None = None
    elapsed_ms: float = 0.0


@dataclass(frozen=True)
class FeatureRecord:
    """A feature vector to store: its kind, the extractor's version, the values."""

    kind: str
    version: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class StoredAnalysis:
    """What :meth:`Store.find_analysis` and :meth:`Store.record_analysis` give back."""

    track: Track
    fingerprint: str | None
    prediction: Prediction | None
    features: list[AudioFeatures] = field(default_factory=list)


@dataclass(frozen=True)
class StoredMood:
    """A track with its mood by one set of models, as the recommender's candidates need it.

    ``location`` is where to play it: a local file's path, else the source's URL (None when
    the source has neither).
    """

    track_id: int
    title: str
    artist: str
    duration_s: float | None
    quadrant: str
    valence: float
    arousal: float
    confidence: float
    embedding: list[float] | None
    provider: str
    location: str | None


def _operational_reason(exc: OperationalError) -> str:
    """The driver's one-line reason, with what SQLite's "database is locked" means here."""
    text = str(exc.orig).splitlines()[0] if str(exc.orig) else type(exc.orig).__name__
    if "locked" in text or "busy" in text:
        text += ": another program held its write lock past the busy timeout"
    return text


def _check_source(record: TrackRecord) -> None:
    if not record.provider or not record.provider_id:
        raise InvalidRecordError(f"{record.provider or '?'}: empty provider or provider id")


def _check_scope(scope: str) -> str:
    if not scope or not scope.strip() or len(scope) > _MAX_SCOPE:
        raise InvalidRecordError(f"history scope {scope[:40]!r}: give 1 to {_MAX_SCOPE} "
                                 "characters, such as 'cli' or 'discord:<guild id>'")
    return scope


def _check_quadrant(quadrant: str) -> str:
    if quadrant not in QUADRANT_VALUES:
        raise InvalidRecordError(f"unknown quadrant {quadrant!r} (Q1, Q2, Q3 or Q4)")
    return quadrant


class Store:
    """Async storage operations on a session factory.

    Parameters
    ----------
    sessions : async_sessionmaker
        From :func:`bot.storage.engine.make_sessionmaker` (``expire_on_commit=False``: the
        rows returned stay readable after their transaction).

    Notes
    -----
    Rows are returned detached from any session; relationships are not mapped, so nothing is
    lazily loaded behind the caller's back.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @contextlib.asynccontextmanager
    async def transaction(self, what: str) -> AsyncIterator[AsyncSession]:
        """A session in a write transaction, committed on leaving, rolled back on an error.

        The database refusing the write (SQLite's lock held by another program past the
        busy timeout, a full disk) becomes one :class:`StorageError` that names ``what`` and
        the reason, rather than SQLAlchemy's multi-line ``OperationalError``; other errors,
        integrity errors included (callers retry those), pass through unchanged.

        Parameters
        ----------
        what : str
            What is being written, for the message ("feedback on track 3").

        Raises
        ------
        StorageError
            The database refused the write; nothing of the transaction is stored.
        """
        try:
            async with self.sessions() as session, session.begin():
                yield session
        except OperationalError as exc:
            raise StorageError(f"{what}: the database refused the write "
                               f"({_operational_reason(exc)}); nothing was stored") from exc

    # --- tracks and their analyses -----------------------------------------------------------

    async def find_analysis(self, provider: str, provider_id: str,
                            key: str) -> StoredAnalysis | None:
        """The track a provider's id names, and its prediction by these models.

        Parameters
        ----------
        provider, provider_id : str
            The source (for ``local`` the file's absolute path).
        key : str
            The live models' :func:`~bot.storage.models.models_key`.

        Returns
        -------
        StoredAnalysis or None
            None when the source is unknown; ``prediction`` is None when these models have
            not classified the track yet.
        """
        async with self.sessions() as session:
            row = (await session.execute(
                select(Track, TrackSource.fingerprint)
                .join(TrackSource, TrackSource.track_id == Track.id)
                .where(TrackSource.provider == provider,
                       TrackSource.provider_id == provider_id))).first()
            if row is None:
                return None
            track, fingerprint = row
            prediction = await session.scalar(select(Prediction).where(
                Prediction.track_id == track.id, Prediction.models_key == key))
            return StoredAnalysis(track, fingerprint, prediction)

    async def record_analysis(self, track: TrackRecord, prediction: PredictionRecord,
                              features: Sequence[FeatureRecord] = ()) -> StoredAnalysis:
        """Store a classified track in one transaction: track, source, prediction, features.

        The track is found by its source, else by ISRC, else created; metadata it lacks is
        filled in, never overwritten. When a local file's fingerprint changed, its earlier
        predictions and audio features are dropped first (they describe other audio). A
        prediction or feature vector already stored for the same versions is kept (idempotent).

        Raises
        ------
        InvalidRecordError
            Empty provider id, unknown quadrant or feature kind.
        StorageError
            The database refused the write (locked by another program past the busy timeout,
            disk full), or it kept losing races (should not happen). Nothing was stored.
        """
        _check_source(track)
        _check_quadrant(prediction.quadrant)
        for feature in features:
            if feature.kind not in FEATURE_KINDS:
                raise InvalidRecordError(f"unknown feature kind {feature.kind!r} "
                                         f"(one of {', '.join(FEATURE_KINDS)})")
        for attempt in range(_ATTEMPTS):
            try:
                async with self.sessions() as session, session.begin():
                    row = await self._upsert_track(session, track)
                    stored = await self._add_prediction(session, row.id, prediction)
                    rows = [await self._add_features(session, row.id, f) for f in features]
                    return StoredAnalysis(row, track.fingerprint, stored, rows)
            except IntegrityError as exc:
                # Another task stored the same track or prediction first: the retry finds it.
                if attempt == _ATTEMPTS - 1:
                    raise StorageError(f"{track.provider}:{track.provider_id}: could not "
                                       f"store the analysis: {exc.orig}") from exc
            except OperationalError as exc:
                # The transaction was rolled back: nothing of it is stored.
                raise StorageError(f"{track.provider}:{track.provider_id}: could not store "
                                   f"the analysis ({_operational_reason(exc)}); nothing was "
                                   "stored") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _upsert_track(self, session: AsyncSession, record: TrackRecord) -> Track:
        isrc = normalize_isrc(record.isrc)
        gaps = {"artist": record.artist, "album": record.album,
                "duration_s": record.duration_s, "isrc": isrc}
        source = await session.scalar(select(TrackSource).where(
            TrackSource.provider == record.provider,
            TrackSource.provider_id == record.provider_id))
        if source is not None:
            if record.fingerprint is not None and source.fingerprint != record.fingerprint:
                await self._forget_audio(session, source.track_id)
                source.fingerprint = record.fingerprint
            if record.url is not None:
                source.url = record.url
            track = await session.get_one(Track, source.track_id)
            _fill_gaps(track, gaps)
            return track
        track_or_none = None
        if isrc is not None:
            track_or_none = await session.scalar(select(Track).where(Track.isrc == isrc)
                                                 .order_by(Track.id).limit(1))
        if track_or_none is None:
            track = Track(title=record.title, artist=record.artist, album=record.album,
                          duration_s=record.duration_s, isrc=isrc)
            session.add(track)
            await session.flush()
        else:
            track = track_or_none
            _fill_gaps(track, gaps)
        session.add(TrackSource(track_id=track.id, provider=record.provider,
                                provider_id=record.provider_id, url=record.url,
                                fingerprint=record.fingerprint,
                                served_preview=record.served_preview))
        await session.flush()
        return track

    @staticmethod
    async def _forget_audio(session: AsyncSession, track_id: int) -> None:
        await session.execute(delete(Prediction).where(Prediction.track_id == track_id))
        await session.execute(delete(AudioFeatures).where(
            AudioFeatures.track_id == track_id, AudioFeatures.kind.in_(_AUDIO_FEATURE_KINDS)))

    @staticmethod
    async def _add_prediction(session: AsyncSession, track_id: int,
                              record: PredictionRecord) -> Prediction:
        key = models_key(record.models, record.weights)
        existing = await session.scalar(select(Prediction).where(
            Prediction.track_id == track_id, Prediction.models_key == key))
        if existing is not None:
            return existing
        row = Prediction(
            track_id=track_id, models_key=key, models=dict(record.models),
            probabilities=dict(record.probabilities), quadrant=record.quadrant,
            valence=record.valence, arousal=record.arousal, confidence=record.confidence,
            timeline=list(record.timeline), embedding=record.embedding,
            elapsed_ms=record.elapsed_ms)
        session.add(row)
        await session.flush()
        return row

    @staticmethod
    async def _add_features(session: AsyncSession, track_id: int,
                            record: FeatureRecord) -> AudioFeatures:
        existing = await session.scalar(select(AudioFeatures).where(
            AudioFeatures.track_id == track_id, AudioFeatures.kind == record.kind,
            AudioFeatures.version == record.version))
        if existing is not None:
            return existing
        row = AudioFeatures(track_id=track_id, kind=record.kind, version=record.version,
                            values=dict(record.values))
        session.add(row)
        await session.flush()
        return row

    async def moods(self, key: str) -> list[StoredMood]:
        """Every track with a prediction by the models of ``key`` (one row per track; ``key``
        is their :func:`~bot.storage.models.models_key`).

        A track known from several sources is listed once, with its local file when it has
        one (what a playlist can point at), else its first source.
        """
        query = (select(Track, Prediction, TrackSource)
                 .join(Prediction, Prediction.track_id == Track.id)
                 .join(TrackSource, TrackSource.track_id == Track.id)
                 .where(Prediction.models_key == key)
                 .order_by(Track.id, (TrackSource.provider != "local"), TrackSource.id))
        async with self.sessions() as session:
            rows = (await session.execute(query)).all()
        moods: dict[int, StoredMood] = {}
        for track, prediction, source in rows:
            if track.id in moods:
                continue
            location = source.provider_id if source.provider == "local" else source.url
            moods[track.id] = StoredMood(
                track.id, track.title, track.artist or "", track.duration_s,
                prediction.quadrant, prediction.valence, prediction.arousal,
                prediction.confidence, prediction.embedding, source.provider, location)
        return list(moods.values())

    async def count_predictions(self) -> int:
        """Number of stored predictions."""
        async with self.sessions() as session:
            return await session.scalar(select(func.count()).select_from(Prediction)) or 0

    async def prediction_keys(self) -> list[tuple[str, int]]:
        """Each model set's :func:`~bot.storage.models.models_key` with its number of stored
        predictions, the most recently used first."""
        query = (select(Prediction.models_key, func.count())
                 .group_by(Prediction.models_key)
                 .order_by(func.max(Prediction.created_at).desc(), Prediction.models_key))
        async with self.sessions() as session:
            return [(key, count) for key, count in (await session.execute(query)).all()]

    async def prune_predictions(self, keep: str) -> int:
        """Delete the predictions of every model set but ``keep``, in one transaction.

        Older model versions or fusion weights leave their predictions behind: they are never
        served again unless those models come back (a rollback then classifies the tracks
        anew). Tracks, sources, features, feedback and history are kept.

        Returns
        -------
        int
            Number of predictions deleted.

        Raises
        ------
        InvalidRecordError
            ``keep`` is empty (that would delete every prediction).
        StorageError
            The database refused the write; nothing was deleted.
        """
        if not keep.strip():
            raise InvalidRecordError("the model set to keep is empty")
        async with self.transaction("pruning predictions") as session:
            result = await session.execute(
                delete(Prediction).where(Prediction.models_key != keep))
        return int(getattr(result, "rowcount", 0) or 0)

    # --- listening history -------------------------------------------------------------------

    async def record_track_events(self, scope: str, kind: str, track_ids: Sequence[int], *,
                                  at: datetime | None = None) -> None:
        """Remember that tracks were played or suggested in a scope, in one transaction.

        Parameters
        ----------
        scope : str
            Where: ``cli``, ``discord:<guild id>``, ``mpd:<host:port>`` (1 to 128 characters).
        kind : str
            ``played`` or ``suggested``.
        track_ids : sequence of int
            The tracks, in the order they were played or suggested (later ones count as more
            recent when they share ``at``).
        at : datetime, optional
            When (timezone-aware); default now.

        Raises
        ------
        InvalidRecordError
            Empty or too long scope, unknown kind, a naive ``at``.
        NotFoundError
            A track does not exist (nothing is recorded).
        """
        _check_scope(scope)
        if kind not in EVENT_KINDS:
            raise InvalidRecordError(f"unknown history event {kind!r} "
                                     f"(one of {', '.join(EVENT_KINDS)})")
        if at is not None and at.utcoffset() is None:
            raise InvalidRecordError(f"naive datetime {at.isoformat()}: give a timezone-aware "
                                     "one")
        if not track_ids:
            return
        when = at or utcnow()
        async with self.transaction(f"history of {scope}") as session:
            known = set((await session.scalars(
                select(Track.id).where(Track.id.in_(set(track_ids))))).all())
            missing = sorted(set(track_ids) - known)
            if missing:
                raise NotFoundError(f"track {missing[0]} does not exist")
            session.add_all(TrackEvent(track_id=t, scope=scope, kind=kind, at=when)
                            for t in track_ids)

    async def recent_track_ids(self, scope: str, limit: int) -> list[int]:
        """The tracks most recently played or suggested in a scope, most recent first.

        Parameters
        ----------
        scope : str
            As given to :meth:`record_track_events`.
        limit : int
            Most tracks returned (a track seen several times counts once, at its latest).

        Returns
        -------
        list of int
            Track ids, distinct; empty when ``limit`` is 0 or nothing was recorded.

        Raises
        ------
        InvalidRecordError
            Empty or too long scope, negative limit.
        """
        _check_scope(scope)
        if limit < 0:
            raise InvalidRecordError(f"history limit must be >= 0, got {limit}")
        if limit == 0:
            return []
        latest = func.max(TrackEvent.at)
        query = (select(TrackEvent.track_id)
                 .where(TrackEvent.scope == scope)
                 .group_by(TrackEvent.track_id)
                 .order_by(latest.desc(), func.max(TrackEvent.id).desc())
                 .limit(limit))
        async with self.sessions() as session:
            return list((await session.scalars(query)).all())

    # --- feedback ------------------------------------------------------------------------------

    async def set_feedback(self, frontend: str, user_id: str, track_id: int, quadrant: str,
                           *, context: str | None = None) -> Feedback:
        """Record a user's mood label for a track, replacing their earlier one.

        Parameters
        ----------
        frontend : str
            Where the user is known: ``discord``, ``cli``, ``mpd``.
        user_id : str
            The user's id on that front-end.
        track_id : int
            The track.
        quadrant : str
            The label, ``Q1`` .. ``Q4``.
        context : str, optional
            Where it was given (a Discord guild's id).

        Raises
        ------
        InvalidRecordError
            Unknown quadrant.
        NotFoundError
            The track does not exist.
        """
        _check_quadrant(quadrant)
        where = (Feedback.frontend == frontend, Feedback.user_id == user_id,
                 Feedback.track_id == track_id)
        for attempt in range(_ATTEMPTS):
            try:
                async with self.transaction(f"feedback on track {track_id}") as session:
                    row = await session.scalar(select(Feedback).where(*where))
                    if row is None:
                        if await session.get(Track, track_id) is None:
                            raise NotFoundError(f"track {track_id} does not exist")
                        row = Feedback(frontend=frontend, user_id=user_id, track_id=track_id)
                        session.add(row)
                    row.quadrant, row.context, row.created_at = quadrant, context, utcnow()
                    return row
            except IntegrityError as exc:
                if attempt == _ATTEMPTS - 1:
                    raise StorageError(f"feedback on track {track_id}: {exc.orig}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # --- model registry -------------------------------------------------------------------

    async def register_model(self, name: str, version: str, kind: str, sha256: str,
                             metrics: Mapping[str, Any], live: bool) -> ModelVersion:
        """Add a model version to the registry, or update its metrics and live flag.

        Making a version live takes the flag from every other version of the same kind.

        Parameters
        ----------
        name, version : str
            Identify the model (the model card's ``name`` and ``version``).
        kind : str
            The card's kind: ``cldnn``, ``ensemble``, ``spotify-ensemble``.
        sha256 : str
            Hash of the artifact.
        metrics : mapping
            JSON-serialisable evaluation metrics.
        live : bool
            Whether this version serves predictions.

        Returns
        -------
        ModelVersion
            The registry row.

        Raises
        ------
        ModelConflictError
            The version is registered with another artifact (sha256) or kind.
        """
        for attempt in range(_ATTEMPTS):
            try:
                async with self.transaction(f"model {name}-{version}") as session:
                    row = await session.scalar(select(ModelVersion).where(
                        ModelVersion.name == name, ModelVersion.version == version))
                    if row is None:
                        row = ModelVersion(name=name, version=version, kind=kind, sha256=sha256,
                                           metrics=dict(metrics), live=live)
                        session.add(row)
                    elif row.sha256 != sha256 or row.kind != kind:
                        raise ModelConflictError(
                            f"{name}-{version} is registered as {row.kind} with sha256 "
                            f"{row.sha256[:16]}..., not as {kind} with {sha256[:16]}...: "
                            f"give the new model another version")
                    else:
                        row.metrics = dict(metrics)
                        row.live = live
                    await session.flush()
                    if live:
                        await session.execute(
                            update(ModelVersion)
                            .where(ModelVersion.kind == kind, ModelVersion.id != row.id,
                                   ModelVersion.live.is_(True))
                            .values(live=False))
                    return row
            except IntegrityError as exc:
                if attempt == _ATTEMPTS - 1:
                    raise StorageError(f"{name}-{version}: could not register the model: "
                                       f"{exc.orig}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def live_models(self) -> list[ModelVersion]:
        """The live model versions, ordered by kind and name.

        Returns
        -------
        list of ModelVersion
            At most one per kind when registered through :meth:`register_model`.
        """
        async with self.sessions() as session:
            rows = await session.scalars(select(ModelVersion).where(ModelVersion.live.is_(True))
                                         .order_by(ModelVersion.kind, ModelVersion.name))
            return list(rows)

    async def model_versions(self) -> list[ModelVersion]:
        """Every registered model version, oldest first."""
        async with self.sessions() as session:
            return list(await session.scalars(select(ModelVersion).order_by(ModelVersion.id)))

    async def keep_live(self, ids: Sequence[int]) -> None:
        """Mark exactly the model versions ``ids`` live (the models being served), and no other.

        Parameters
        ----------
        ids : sequence of int
            Registry ids (:attr:`ModelVersion.id`) of the live models.
        """
        async with self.transaction("live models") as session:
            await session.execute(update(ModelVersion).where(ModelVersion.id.in_(list(ids)))
                                  .values(live=True))
            await session.execute(update(ModelVersion).where(ModelVersion.id.not_in(list(ids)),
                                                             ModelVersion.live.is_(True))
                                  .values(live=False))

    # --- retraining jobs --------------------------------------------------------------------

    async def start_job(self, requested_by: str) -> RetrainJob:
        """Record a retraining job that starts now (status ``running``).

        Parameters
        ----------
        requested_by : str
            Who asked (``discord:<user id>``, ``cli``), at most 64 characters.
        """
        async with self.transaction("retraining job") as session:
            job = RetrainJob(requested_by=requested_by[:64], status="running", log="")
            session.add(job)
            await session.flush()
            return job

    async def finish_job(self, job_id: int, *, status: str, log: str,
                         model_version_id: int | None = None) -> RetrainJob:
        """Record how a job ended.

        Parameters
        ----------
        job_id : int
            The job (:meth:`start_job`).
        status : {"succeeded", "failed"}
            Its final state.
        log : str
            What happened (the outcome, then the last lines of the training output).
        model_version_id : int, optional
            A registry row of the models it installed.

        Raises
        ------
        InvalidRecordError
            ``status`` is not a job state.
        NotFoundError
            No such job.
        """
        if status not in JOB_STATUSES:
            raise InvalidRecordError(f"job status {status!r} is not one of {JOB_STATUSES}")
        async with self.transaction(f"retraining job {job_id}") as session:
            job = await session.get(RetrainJob, job_id)
            if job is None:
                raise NotFoundError(f"no retraining job {job_id}")
            job.status, job.log, job.finished_at = status, log, utcnow()
            job.model_version_id = model_version_id
            return job

    async def recent_jobs(self, limit: int = 5) -> list[RetrainJob]:
        """The newest retraining jobs, newest first."""
        async with self.sessions() as session:
            return list(await session.scalars(
                select(RetrainJob).order_by(RetrainJob.id.desc()).limit(limit)))

    async def fail_unfinished_jobs(self, log: str) -> int:
        """Mark jobs still ``queued`` or ``running`` as failed with ``log`` (after a restart,
        nothing runs them any more); returns how many."""
        async with self.transaction("retraining jobs") as session:
            result = await session.execute(
                update(RetrainJob).where(RetrainJob.status.in_(("queued", "running")))
                .values(status="failed", log=log, finished_at=utcnow()))
            return int(getattr(result, "rowcount", 0) or 0)


def _fill_gaps(track: Track, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        if value is not None and getattr(track, name) is None:
            setattr(track, name, value)

