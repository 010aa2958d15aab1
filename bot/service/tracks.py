"""The stored library for front-ends that let users pick from it (the Discord bot).

Search stored tracks by name, answer the stored mood of one track, suggest tracks like a
stored one, record a user's mood label, and count the moods heard in one place over a period.

A front-end names a stored track by a reference, ``track:<id>`` (:func:`track_ref`), which it
may put wherever a query goes (an autocomplete value, a button's state):
:meth:`StoredTracks.resolve` answers a reference from the database and anything else through
:meth:`MoodService.classify <bot.service.mood.MoodService.classify>`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import func, select

from bot.recommend import RecommendError
from bot.recommend.values import quadrant_of
from bot.service.errors import ServiceError
from bot.service.records import mood_result
from bot.storage.errors import InvalidRecordError, NotFoundError, StorageError
from bot.storage.models import Prediction, Track, TrackEvent, TrackSource
from bot.storage.store import StoredMood
from mer_models.moods import QUADRANTS

if TYPE_CHECKING:
    from bot.service.mood import MoodService, TrackMood
    from bot.service.recommendations import Picks

#: ``{quadrant: mood word}`` in quadrant order: ``{"Q1": "happy", ..., "Q4": "calm"}``.
MOODS: Final[dict[str, str]] = {q.value: q.mood for q in QUADRANTS}
_REF = re.compile(r"track:(\d{1,18})")


def track_ref(track_id: int) -> str:
    """The reference of a stored track, ``track:<id>``, usable where a query goes."""
    return f"track:{track_id}"


def parse_ref(text: str) -> int | None:
    """The track id of a ``track:<id>`` reference; None for any other text."""
    found = _REF.fullmatch(text.strip())
    return int(found.group(1)) if found else None


def quadrant(mood: str) -> str:
    """``Q1`` .. ``Q4`` for a mood word or quadrant name (case-insensitive).

    Raises
    ------
    ServiceError
        Not a mood (the message lists the known ones).
    """
    try:
        return quadrant_of(mood)
    except RecommendError as exc:
        raise ServiceError(str(exc)) from exc


@dataclass(frozen=True)
class TrackMatch:
    """A stored track that matches a search: enough to list it and to name it again.

    Attributes
    ----------
    track_id : int
        Database id.
    title, artist : str
        Display metadata (``artist`` may be empty).
    quadrant : str
        Its mood by the live models, ``Q1`` .. ``Q4``.
    """

    track_id: int
    title: str
    artist: str
    quadrant: str

    @property
    def name(self) -> str:
        """``Artist - Title``, or the title alone."""
        return f"{self.artist} - {self.title}" if self.artist else self.title

    @property
    def ref(self) -> str:
        """Its ``track:<id>`` reference."""
        return track_ref(self.track_id)


@dataclass(frozen=True)
class MoodMix:
    """How many tracks of each mood, in one place over a period, or in the whole library.

    Attributes
    ----------
    counts : dict
        ``{"Q1": n1, ..., "Q4": n4}`` (every quadrant present).
    scope : str or None
        Where they were played or suggested; None: the whole stored library.
    since : datetime or None
        Start of the period (None: ever).
    """

    counts: dict[str, int]
    scope: str | None
    since: datetime | None

    @property
    def total(self) -> int:
        """Tracks counted."""
        return sum(self.counts.values())

    def share(self, quadrant: str) -> float:
        """The fraction of the tracks in ``quadrant`` (0 when nothing was counted)."""
        return self.counts.get(quadrant, 0) / self.total if self.total else 0.0


@dataclass(frozen=True)
class TrackName:
    """A stored track's tags, for lists (a queue) that name tracks they do not analyse.

    Attributes
    ----------
    track_id : int
        The stored track.
    title, artist : str
        Its tags (``artist`` may be empty).
    duration_s : float or None
        Its length, when known.
    """

    track_id: int
    title: str
    artist: str
    duration_s: float | None

    @property
    def name(self) -> str:
        """``Artist - Title``, or the title alone."""
        return f"{self.artist} - {self.title}" if self.artist else self.title


class StoredTracks:
    """The stored library for one service, as pickers and labellers need it.

    Parameters
    ----------
    service : MoodService
        Where the library is stored (its live models decide which predictions count).
    cache_s : float
        How long the list of stored tracks that :meth:`search` filters is reused, in
        seconds (a search runs on every keystroke of an autocomplete).
    """

    def __init__(self, service: MoodService, *, cache_s: float = 30.0) -> None:
        self._service = service
        self.cache_s = cache_s
        self._cached: tuple[float, list[StoredMood]] | None = None

    async def library(self, *, fresh: bool = False) -> list[StoredMood]:
        """The tracks the live models classified, reused for ``cache_s`` seconds.

        Parameters
        ----------
        fresh : bool
            Read the database even when the cached list is recent.
        """
        now = time.monotonic()
        if fresh or self._cached is None or now - self._cached[0] > self.cache_s:
            self._cached = (now, await self._service.store.moods(self._service.models_key))
        return self._cached[1]

    async def search(self, text: str, *, limit: int = 25) -> list[TrackMatch]:
        """Stored tracks whose title or artist starts with ``text``, then those containing it.

        Case and accents of letters are compared as :meth:`str.casefold` does. Within each
        group the most recently stored come first; an empty ``text`` lists the newest.

        Parameters
        ----------
        text : str
            What the user typed so far.
        limit : int
            Most matches returned.
        """
        wanted = " ".join(text.casefold().split())
        ranked: list[tuple[int, int, StoredMood]] = []
        for stored in await self.library():
            rank = _rank(stored, wanted)
            if rank is not None:
                ranked.append((rank, -stored.track_id, stored))
        ranked.sort(key=lambda item: item[:2])
        return [TrackMatch(m.track_id, m.title, m.artist, m.quadrant)
                for _, _, m in ranked[:max(limit, 0)]]

    async def name_of(self, query: str) -> str:
        """What a query names, for a title: a stored track's ``Artist - Title`` for its
        reference, the query itself otherwise."""
        track_id = parse_ref(query)
        for stored in await self.library() if track_id is not None else []:
            if stored.track_id == track_id:
                return TrackMatch(stored.track_id, stored.title, stored.artist,
                                  stored.quadrant).name
        return query

    async def mood(self, track_id: int) -> TrackMood:
        """The stored mood of a track by the live models (nothing is classified).

        Raises
        ------
        ServiceError
            No such track, or the live models have not classified it.
        """
        from bot.service.mood import TrackMood

        key = self._service.models_key
        async with self._service.store.sessions() as session:
            track = await session.get(Track, track_id)
            prediction = await session.scalar(select(Prediction).where(
                Prediction.track_id == track_id, Prediction.models_key == key))
            provider = await session.scalar(
                select(TrackSource.provider).where(TrackSource.track_id == track_id)
                .order_by(TrackSource.provider != "local", TrackSource.id).limit(1))
        if track is None:
            raise ServiceError(f"track {track_id} is not in the library")
        if prediction is None:
            raise ServiceError(f"track {track_id} has not been classified by the live models "
                               "yet: ask for it by name")
        name = f"{track.artist} - {track.title}" if track.artist else track.title
        return TrackMood(track.id, track.title, track.artist or "", provider or "library",
                         mood_result(prediction, name), cached=True)

    async def names(self, track_ids: Collection[int]) -> dict[int, TrackName]:
        """The tags of stored tracks, by id (unknown ids are left out)."""
        if not track_ids:
            return {}
        async with self._service.store.sessions() as session:
            rows = (await session.execute(
                select(Track.id, Track.title, Track.artist, Track.duration_s)
                .where(Track.id.in_(set(track_ids))))).all()
        return {row.id: TrackName(row.id, row.title, row.artist or "", row.duration_s)
                for row in rows}

    async def location(self, track_id: int) -> str:
        """Where a stored track's audio is: its local file's path, else its source's URL.

        Raises
        ------
        ServiceError
            No such track, or it has no source to play or classify.
        """
        async with self._service.store.sessions() as session:
            rows = (await session.execute(
                select(TrackSource.provider, TrackSource.provider_id, TrackSource.url)
                .where(TrackSource.track_id == track_id)
                .order_by(TrackSource.provider != "local", TrackSource.id))).all()
        for provider, provider_id, url in rows:
            if provider == "local":
                return str(provider_id)
            if url:
                return str(url)
        raise ServiceError(f"track {track_id} has no source to play or classify")

    async def live_mood(self, track_id: int) -> TrackMood:
        """The mood by the live models: stored, or classified from the track's source when
        they have not classified it yet (say, after a retrain).

        Raises
        ------
        ServiceError
            No such track, or its source cannot be classified.
        """
        try:
            return await self.mood(track_id)
        except ServiceError as exc:
            if "not been classified" not in str(exc):
                raise
        return await self._service.classify(await self.location(track_id))

    async def audio(self, track_id: int) -> str:
        """What a player streams for a stored track: its local file, else a fresh preview.

        A catalogue track's preview URL expires (Deezer's last minutes), so it is fetched
        again through the resolver, which bounds the download and keeps it in the audio cache.

        Returns
        -------
        str
            A local file's path.

        Raises
        ------
        ServiceError
            No such track, its file is gone, or no source gives its audio now.
        """
        from bot.sources.errors import SourceError

        location = await self.location(track_id)
        if "://" not in location:
            if not await asyncio.to_thread(Path(location).is_file):
                raise ServiceError(f"the file of track {track_id} is gone: rescan the library")
            return location
        try:
            preview = await self._service.resolver.resolve(location)
        except SourceError as exc:
            raise ServiceError(exc.reason) from exc
        return str(preview.path)

    async def resolve(self, query: str) -> TrackMood:
        """The mood of a ``track:<id>`` reference (stored), or of any query (classified).

        Raises
        ------
        ServiceError
            As :meth:`mood` for a reference, as ``MoodService.classify`` otherwise.
        """
        track_id = parse_ref(query)
        if track_id is not None:
            return await self.mood(track_id)
        return await self._service.classify(query)

    async def similar(self, query: str, n: int = 10, *, scope: str | None = None,
                      seed: int = 0) -> Picks:
        """Tracks like one: a stored track's reference, or a query to classify first.

        Parameters
        ----------
        query : str
            ``track:<id>``, or a URL or search text.
        n : int
            How many.
        scope : str, optional
            Where the picks will be heard (see ``Recommendations.recommend``).
        seed : int
            Another seed, another mix of equally good tracks.

        Raises
        ------
        ServiceError
            Unknown track, a library too small, or a query that cannot be classified.
        """
        from bot.service.recommendations import candidate

        recommendations = self._service.recommendations
        track_id = parse_ref(query)
        if track_id is None:
            return await recommendations.recommend(query, n, seed=seed, scope=scope)
        for stored in await self.library(fresh=True):
            if stored.track_id == track_id:
                return await recommendations.recommend(candidate(stored), n, seed=seed,
                                                       scope=scope)
        raise ServiceError(f"track {track_id} is not in the library (or the live models have "
                           "not classified it)")

    async def feedback(self, track_id: int, mood: str, *, frontend: str, user_id: str,
                       context: str | None = None) -> str:
        """Record a user's mood for a track; their earlier answer for it is replaced.

        Parameters
        ----------
        track_id : int
            The track.
        mood : str
            A mood word or quadrant (``sad``, ``Q3``).
        frontend : str
            Where the user is known: ``discord``, ``cli``, ``mpd``.
        user_id : str
            The user's id there.
        context : str, optional
            Where the answer was given (a Discord guild's id).

        Returns
        -------
        str
            The quadrant stored.

        Raises
        ------
        ServiceError
            Unknown mood or track, or the database refused.
        """
        label = quadrant(mood)
        try:
            await self._service.store.set_feedback(frontend, user_id, track_id, label,
                                                   context=context)
        except (InvalidRecordError, NotFoundError) as exc:
            raise ServiceError(str(exc)) from exc
        except StorageError as exc:
            raise ServiceError(f"could not store the answer: {exc}") from exc
        return label

    async def mood_mix(self, *, scope: str | None = None,
                       since: datetime | None = None) -> MoodMix:
        """The moods of the tracks played or suggested in ``scope`` since ``since``.

        Each track counts once however often it was heard; tracks the live models have not
        classified are left out. Without a scope: the whole stored library (``since`` then
        counts tracks stored since).

        Raises
        ------
        ServiceError
            ``since`` is a naive datetime.
        """
        if since is not None and since.utcoffset() is None:
            raise ServiceError(f"naive datetime {since.isoformat()}: give a timezone-aware one")
        key = self._service.models_key
        if scope is None:
            query = (select(Prediction.quadrant, func.count(Prediction.track_id))
                     .where(Prediction.models_key == key)
                     .group_by(Prediction.quadrant))
            if since is not None:
                query = query.join(Track, Track.id == Prediction.track_id).where(
                    Track.created_at >= since)
        else:
            query = (select(Prediction.quadrant, func.count(TrackEvent.track_id.distinct()))
                     .join(Prediction, Prediction.track_id == TrackEvent.track_id)
                     .where(TrackEvent.scope == scope, Prediction.models_key == key)
                     .group_by(Prediction.quadrant))
            if since is not None:
                query = query.where(TrackEvent.at >= since)
        async with self._service.store.sessions() as session:
            rows: Mapping[str, int] = {q: int(c) for q, c in (await session.execute(query))}
        return MoodMix({q: rows.get(q, 0) for q in MOODS}, scope, since)


def _rank(stored: StoredMood, wanted: str) -> int | None:
    """0: title or artist starts with ``wanted``; 1: a word of them does; 2: contains it."""
    if not wanted:
        return 0
    title, artist = stored.title.casefold(), stored.artist.casefold()
    if title.startswith(wanted) or artist.startswith(wanted):
        return 0
    words = f"{artist} {title}".split()
    if any(" ".join(words[i:]).startswith(wanted) for i in range(len(words))):
        return 1
    if wanted in f"{artist} - {title}":
        return 2
    return None
