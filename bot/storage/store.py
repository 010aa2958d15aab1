"""The storage operations the service needs, each in its own transaction.

Writes that may race (the same track found by two requests, the same prediction computed by
two workers) rely on the database's unique constraints: the loser's ``IntegrityError`` is
caught and the winner's row read back, so callers never see duplicates or errors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.db.engine import make_sessionmaker
from bot.db.errors import InvalidRecordError, ModelConflictError, NotFoundError, StorageError
from bot.db.models import (
    FEATURE_KINDS,
    PROVIDERS,
    AudioFeatures,
    Feedback,
    ModelVersion,
    Prediction,
    Track,
    TrackSource,
)
from mer_models.moods import Quadrant
from mer_models.result import MoodResult

#: Attempts of a read-or-insert before giving up (each retry follows a lost race).
_ATTEMPTS = 3
_ISRC = re.compile(r"[A-Z]{2}[A-Z0-9]{3}[0-9]{7}")


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """The fingerprint of a local file: ``"size:mtime_ns"``.

    Parameters
    ----------
    path : str or PathLike
        The file.

    Returns
    -------
    str
        Changes whenever the file is rewritten (or touched).
    """
    stat = os.stat(path)
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def normalize_isrc(isrc: str | None) -> str | None:
    """An ISRC in its 12-character form (``"US-RC1-76-07839"`` -> ``"USRC17607839"``).

    Parameters
    ----------
    isrc : str or None
        As given by a provider.

    Returns
    -------
    str or None
        None when missing or malformed (a malformed code would only match wrongly).
    """
    if not isrc:
        return None
    code = isrc.replace("-", "").replace(" ", "").strip().upper()
    return code if _ISRC.fullmatch(code) else None


def _provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise InvalidRecordError(f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
    return provider


def _source_id(provider: str, provider_id: str) -> str:
    if not provider_id:
        raise InvalidRecordError(f"{provider}: empty provider id")
    return os.path.abspath(provider_id) if provider == "local" else provider_id


def _quadrant(quadrant: Quadrant | str) -> str:
    try:
        return Quadrant(quadrant).value
    except ValueError as exc:
        raise InvalidRecordError(f"unknown quadrant {quadrant!r} (Q1, Q2, Q3 or Q4)") from exc


class Store:
    """Async storage operations on a session factory.

    Parameters
    ----------
    sessions : async_sessionmaker
        From :func:`bot.db.engine.make_sessionmaker` (``expire_on_commit=False``: the rows
        returned stay readable after their transaction).

    Notes
    -----
    Rows are returned detached from any session; relationships are not mapped, so
    nothing is lazily loaded behind the caller's back.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @classmethod
    def from_engine(cls, engine: AsyncEngine) -> Store:
        """A store on a new session factory of ``engine``.

        Parameters
        ----------
        engine : AsyncEngine
            From :func:`bot.db.engine.create_engine`.

        Returns
        -------
        Store
            The store.
        """
        return cls(make_sessionmaker(engine))

    # --- tracks ---------------------------------------------------------------------------

    async def find_track_by_source(self, provider: str, provider_id: str) -> Track | None:
        """The track a provider's id (for ``local``: the file's path) is a source of.

        Parameters
        ----------
        provider : str
            ``spotify``, ``deezer``, ``itunes``, ``youtube``, ``local`` or ``url``.
        provider_id : str
            The provider's id of the track.

        Returns
        -------
        Track or None
            None when the source is unknown.
        """
        provider_id = _source_id(_provider(provider), provider_id)
        async with self._sessions() as session:
            return await session.scalar(
                select(Track).join(TrackSource, TrackSource.track_id == Track.id)
                .where(TrackSource.provider == provider, TrackSource.provider_id == provider_id))

    async def upsert_track(self, title: str, artist: str | None, album: str | None,
                           duration_s: float | None, isrc: str | None, provider: str,
                           provider_id: str, url: str | None, fingerprint: str | None = None,
                           *, served_preview: bool = False) -> Track:
        """Find or create the track of a source, and record the source.

        The track is the one the source already belongs to, else the oldest track with the
        same ISRC (when given), else a new one. Metadata the track lacks is filled in from
        the arguments, never overwritten; the source's URL and fingerprint are updated.

        Parameters
        ----------
        title, artist, album : str or None
            Metadata (``title`` is required for a new track).
        duration_s : float or None
            Duration in seconds.
        isrc : str or None
            International Standard Recording Code (hyphens allowed; a malformed one is
            ignored).
        provider : str
            ``spotify``, ``deezer``, ``itunes``, ``youtube``, ``local`` or ``url``.
        provider_id : str
            The provider's id; for ``local`` the file's path (stored absolute).
        url : str or None
            Where to fetch the audio or page.
        fingerprint : str or None
            For local files ``"size:mtime_ns"`` (see :func:`file_fingerprint`).
        served_preview : bool
            Whether the provider only serves a preview clip of the track.

        Returns
        -------
        Track
            The track (detached).

        Raises
        ------
        InvalidRecordError
            Unknown provider or empty provider id.
        """
        provider_id = _source_id(_provider(provider), provider_id)
        isrc = normalize_isrc(isrc)
        for attempt in range(_ATTEMPTS):
            try:
                async with self._sessions() as session, session.begin():
                    source = await session.scalar(select(TrackSource).where(
                        TrackSource.provider == provider, TrackSource.provider_id == provider_id))
                    if source is not None:
                        if fingerprint is not None and source.fingerprint != fingerprint:
                            source.fingerprint = fingerprint
                        if url is not None and source.url != url:
                            source.url = url
                        track = await session.get_one(Track, source.track_id)
                        _fill_gaps(track, artist=artist, album=album, duration_s=duration_s,
                                   isrc=isrc)
                        return track
                    match: Track | None = None
                    if isrc is not None:
                        match = await session.scalar(select(Track).where(Track.isrc == isrc)
                                                     .order_by(Track.id).limit(1))
                    if match is None:
                        track = Track(title=title, artist=artist, album=album,
                                      duration_s=duration_s, isrc=isrc)
                        session.add(track)
                        await session.flush()
                    else:
                        track = match
                        _fill_gaps(track, artist=artist, album=album, duration_s=duration_s,
                                   isrc=isrc)
                    session.add(TrackSource(track_id=track.id, provider=provider,
                                            provider_id=provider_id, url=url,
                                            fingerprint=fingerprint,
                                            served_preview=served_preview))
                    await session.flush()
                    return track
            except IntegrityError as exc:
                # Another task recorded the same source first: the next attempt finds it.
                if attempt == _ATTEMPTS - 1:
                    raise StorageError(f"{provider}:{provider_id}: could not record the "
                                       f"track: {exc.orig}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def local_fingerprint(self, path_str: str | os.PathLike[str]) -> str | None:
        """The fingerprint stored for a local file.

        Parameters
        ----------
        path_str : str or PathLike
            The file's path (made absolute, as :meth:`upsert_track` stores it).

        Returns
        -------
        str or None
            ``"size:mtime_ns"`` when the file is known and has one.
        """
        provider_id = _source_id("local", os.fspath(path_str))
        async with self._sessions() as session:
            return await session.scalar(select(TrackSource.fingerprint).where(
                TrackSource.provider == "local", TrackSource.provider_id == provider_id))

    # --- predictions and features ---------------------------------------------------------

    async def get_prediction(self, track_id: int, cldnn_version: str | None,
                             ensemble_version: str | None) -> Prediction | None:
        """The stored prediction of a track by one pair of model versions.

        Parameters
        ----------
        track_id : int
            The track.
        cldnn_version, ensemble_version : str or None
            Model versions as in ``MoodResult.models`` (None: that model took no part).

        Returns
        -------
        Prediction or None
            None when not stored yet.
        """
        async with self._sessions() as session:
            return await session.scalar(select(Prediction).where(
                Prediction.track_id == track_id,
                Prediction.cldnn_version == (cldnn_version or ""),
                Prediction.ensemble_version == (ensemble_version or "")))

    async def save_prediction(self, track_id: int, result: MoodResult) -> Prediction:
        """Store a track's prediction; idempotent per (track, model versions).

        Parameters
        ----------
        track_id : int
            The track.
        result : MoodResult
            The engine's result; its ``models`` give the versions.

        Returns
        -------
        Prediction
            The stored row: the existing one when the track already has a prediction by
            these model versions (the new result is then discarded).

        Raises
        ------
        NotFoundError
            The track does not exist.
        """
        cldnn = result.models.get("cldnn") or ""
        ensemble = result.models.get("ensemble") or ""
        existing = await self.get_prediction(track_id, cldnn, ensemble)
        if existing is not None:
            return existing
        row = Prediction(
            track_id=track_id, cldnn_version=cldnn, ensemble_version=ensemble,
            probabilities=dict(result.probabilities), quadrant=result.quadrant.value,
            valence=result.valence, arousal=result.arousal, confidence=result.confidence,
            timeline=[{"start": w.start, "end": w.end, "quadrant": w.quadrant.value,
                       "probabilities": dict(w.probabilities)} for w in result.windows],
            elapsed_ms=float(result.timings_ms.get("total", 0.0)))
        try:
            async with self._sessions() as session, session.begin():
                session.add(row)
            return row
        except IntegrityError as exc:
            existing = await self.get_prediction(track_id, cldnn, ensemble)
            if existing is None:
                raise NotFoundError(f"track {track_id} does not exist") from exc
            return existing

    async def save_features(self, track_id: int, kind: str, version: str,
                            values: Mapping[str, Any]) -> AudioFeatures:
        """Store a track's feature vector; idempotent per (track, kind, version).

        Parameters
        ----------
        track_id : int
            The track.
        kind : str
            ``descriptors`` (audio descriptors) or ``spotify`` (Spotify audio features).
        version : str
            Version of the extractor (or of the API) that produced the values.
        values : mapping
            JSON-serialisable feature values.

        Returns
        -------
        AudioFeatures
            The stored row (the existing one when already stored).

        Raises
        ------
        InvalidRecordError
            Unknown kind.
        NotFoundError
            The track does not exist.
        """
        if kind not in FEATURE_KINDS:
            raise InvalidRecordError(f"unknown feature kind {kind!r} "
                                     f"(one of {', '.join(FEATURE_KINDS)})")
        query = select(AudioFeatures).where(AudioFeatures.track_id == track_id,
                                            AudioFeatures.kind == kind,
                                            AudioFeatures.version == version)
        async with self._sessions() as session:
            existing = await session.scalar(query)
        if existing is not None:
            return existing
        row = AudioFeatures(track_id=track_id, kind=kind, version=version, values=dict(values))
        try:
            async with self._sessions() as session, session.begin():
                session.add(row)
            return row
        except IntegrityError as exc:
            async with self._sessions() as session:
                existing = await session.scalar(query)
            if existing is None:
                raise NotFoundError(f"track {track_id} does not exist") from exc
            return existing

    async def count_predictions(self) -> int:
        """Number of stored predictions.

        Returns
        -------
        int
            Rows of ``predictions``.
        """
        async with self._sessions() as session:
            return await session.scalar(select(func.count()).select_from(Prediction)) or 0

    async def forget_analysis(self, track_id: int) -> int:
        """Delete a track's predictions and our descriptors (its audio changed).

        Returns
        -------
        int
            Predictions deleted.
        """
        async with self._sessions() as session, session.begin():
            deleted = await session.execute(
                delete(Prediction).where(Prediction.track_id == track_id))
            await session.execute(delete(AudioFeatures).where(
                AudioFeatures.track_id == track_id, AudioFeatures.kind == "descriptors"))
            return int(getattr(deleted, "rowcount", 0) or 0)

    # --- feedback -------------------------------------------------------------------------

    async def add_feedback(self, user_id: str | int, guild_id: str | int | None, track_id: int,
                           quadrant: Quadrant | str) -> Feedback:
        """Record a user's mood label for a track.

        Parameters
        ----------
        user_id : str or int
            Discord user snowflake.
        guild_id : str, int or None
            Discord guild snowflake; None for direct messages.
        track_id : int
            The track.
        quadrant : Quadrant or str
            The label, ``Q1`` .. ``Q4``.

        Returns
        -------
        Feedback
            The new row.

        Raises
        ------
        InvalidRecordError
            Unknown quadrant.
        NotFoundError
            The track does not exist.
        """
        row = Feedback(user_id=str(user_id), guild_id=None if guild_id is None else str(guild_id),
                       track_id=track_id, quadrant=_quadrant(quadrant))
        try:
            async with self._sessions() as session, session.begin():
                session.add(row)
        except IntegrityError as exc:
            raise NotFoundError(f"track {track_id} does not exist") from exc
        return row

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
                async with self._sessions() as session, session.begin():
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
        async with self._sessions() as session:
            rows = await session.scalars(select(ModelVersion).where(ModelVersion.live.is_(True))
                                         .order_by(ModelVersion.kind, ModelVersion.name))
            return list(rows)


def _fill_gaps(track: Track, **values: Any) -> None:
    for name, value in values.items():
        if value is not None and getattr(track, name) is None:
            setattr(track, name, value)

