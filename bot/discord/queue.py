"""Each guild's queue, in the database, and the :class:`~bot.service.player.Player` over it.

A guild's queue is its ``playing`` entry (the current track, at most one) followed by its
``queued`` entries in the order they were added (:class:`~bot.discord.models.QueueEntry`).
Entries leave as ``played``, ``skipped`` or ``removed`` and stay as the queue's history, so
the queue survives restarts: a bot that comes back finds its guilds where they were.

The state machine (:class:`GuildQueues`):

- ``add``: new entries are ``queued``; when nothing is playing the first becomes ``playing``
  (the queue starts on its own, with or without a voice channel);
- ``advance``: the current entry becomes ``played`` (it ended) or ``skipped``, and the next
  ``queued`` one becomes ``playing``;
- ``remove``: an upcoming entry becomes ``removed``; ``clear``: all of them;
- every change is announced to the guild's subscribers (:meth:`GuildQueues.changes`), which
  is how the listener (classify ahead, suggest, auto-DJ) and voice playback follow the queue.

:class:`GuildPlayer` shows one guild's queue as a :class:`~bot.service.player.Player`, so the
listening logic the MPD plugin runs (:class:`~bot.service.listening.Listener`) runs here too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.discord.models import Guild, QueueEntry
from bot.service import ServiceError, utcnow
from bot.service.player import SUBSYSTEMS, PlayerError, QueuedTrack
from bot.service.tracks import TrackName, parse_ref, track_ref

if TYPE_CHECKING:
    from bot.service import MoodService
    from bot.service.recommendations import Pick
    from bot.service.tracks import StoredTracks

#: The most tracks waiting in one guild's queue.
MAX_QUEUED: Final = 200
#: ``requested_by`` of the tracks the auto-DJ adds.
AUTO_DJ: Final = "auto-dj"
_ACTIVE: Final = ("playing", "queued")


@dataclass(frozen=True)
class QueueItem(TrackName):
    """One entry of a guild's queue: a stored track (:class:`TrackName`) and its place.

    Attributes
    ----------
    entry_id : int
        The queue entry's id (stable while it is queued).
    position : int
        0 for the current track, then 1, 2, ... for those waiting.
    requested_by : str
        Who queued it: a Discord user's id, or :data:`AUTO_DJ`.
    """

    entry_id: int
    position: int
    requested_by: str

    @property
    def playing(self) -> bool:
        """Whether this is the current track."""
        return self.position == 0


class GuildQueues:
    """Every guild's queue, stored in the service's database.

    Parameters
    ----------
    service : MoodService
        Whose database holds the queue.
    tracks : StoredTracks
        The stored library (names the queued tracks).
    max_queued : int
        The most tracks waiting in one guild's queue.
    """

    def __init__(self, service: MoodService, tracks: StoredTracks, *,
                 max_queued: int = MAX_QUEUED) -> None:
        self._service = service
        self._tracks = tracks
        self.max_queued = max_queued
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._subscribers: defaultdict[int, set[asyncio.Queue[None]]] = defaultdict(set)

    # --- reading -------------------------------------------------------------------------

    async def items(self, guild_id: int, limit: int | None = None) -> list[QueueItem]:
        """The guild's queue: the current track (position 0) when there is one, then the
        waiting tracks in order.

        Parameters
        ----------
        guild_id : int
            The guild.
        limit : int, optional
            At most this many entries (None: all).
        """
        query = (select(QueueEntry.id, QueueEntry.state, QueueEntry.track_id,
                        QueueEntry.requested_by)
                 .where(QueueEntry.guild_id == str(guild_id), QueueEntry.state.in_(_ACTIVE))
                 .order_by(QueueEntry.state != "playing", QueueEntry.id))
        if limit is not None:
            query = query.limit(max(limit, 0))
        async with self._service.store.sessions() as session:
            rows = (await session.execute(query)).all()
        names = await self._tracks.names({row.track_id for row in rows})
        playing = bool(rows) and rows[0].state == "playing"
        items = []
        for i, row in enumerate(rows):
            known = names.get(row.track_id) or TrackName(row.track_id, f"track {row.track_id}",
                                                          "", None)
            items.append(QueueItem(known.track_id, known.title, known.artist, known.duration_s,
                                   entry_id=row.id, position=i if playing else i + 1,
                                   requested_by=row.requested_by))
        return items

    async def waiting(self, guild_id: int) -> list[QueueItem]:
        """The tracks waiting after the current one, in order (position 1 first)."""
        return [item for item in await self.items(guild_id) if not item.playing]

    async def current(self, guild_id: int) -> QueueItem | None:
        """The guild's current track (None when the queue is empty)."""
        first = await self.items(guild_id, limit=1)
        return first[0] if first and first[0].playing else None

    async def length(self, guild_id: int) -> int:
        """How many tracks wait after the current one."""
        async with self._service.store.sessions() as session:
            count = await session.scalar(select(func.count(QueueEntry.id)).where(
                QueueEntry.guild_id == str(guild_id), QueueEntry.state == "queued"))
        return int(count or 0)

    async def active_guilds(self) -> list[int]:
        """The guilds whose queue is not empty (to pick up after a restart)."""
        async with self._service.store.sessions() as session:
            ids = (await session.scalars(select(QueueEntry.guild_id).distinct().where(
                QueueEntry.state.in_(_ACTIVE)))).all()
        return sorted(int(i) for i in ids)

    # --- changing ------------------------------------------------------------------------

    async def add(self, guild_id: int, requested_by: str,
                  track_ids: Sequence[int]) -> list[QueueItem]:
        """Queue stored tracks at the end; the first starts when nothing is playing.

        Parameters
        ----------
        guild_id : int
            The guild.
        requested_by : str
            Who asks: a user's id, or :data:`AUTO_DJ`.
        track_ids : sequence of int
            Stored tracks, in order.

        Returns
        -------
        list of QueueItem
            The new entries, with their positions.

        Raises
        ------
        ServiceError
            No tracks, an unknown track, or the queue would hold more than ``max_queued``.
        """
        if not track_ids:
            raise ServiceError("nothing to queue")
        known = await self._tracks.names(track_ids)
        missing = [t for t in track_ids if t not in known]
        if missing:
            raise ServiceError(f"track {missing[0]} is not in the library")
        async with self._writing(guild_id) as session:
            waiting = int(await session.scalar(select(func.count(QueueEntry.id)).where(
                QueueEntry.guild_id == str(guild_id), QueueEntry.state == "queued")) or 0)
            playing = await self._playing(session, guild_id)
            starts = 1 if playing is None else 0  # the first added plays at once
            if waiting + len(track_ids) - starts > self.max_queued:
                raise ServiceError(f"the queue is full: it holds at most {self.max_queued} "
                                   f"tracks and has {waiting} waiting")
            if await session.get(Guild, str(guild_id)) is None:
                session.add(Guild(id=str(guild_id), settings={}))
                await session.flush()
            entries = [QueueEntry(guild_id=str(guild_id), track_id=t,
                                  requested_by=requested_by, state="queued")
                       for t in track_ids]
            if playing is None:
                entries[0].state, entries[0].started_at = "playing", utcnow()
            session.add_all(entries)
            await session.flush()
            new_ids = {e.id for e in entries}
        self._notify(guild_id)
        return [item for item in await self.items(guild_id) if item.entry_id in new_ids]

    async def advance(self, guild_id: int, *, skipped: bool = False,
                      entry_id: int | None = None) -> QueueItem | None:
        """End the current track (played, or skipped) and start the next one.

        Parameters
        ----------
        guild_id : int
            The guild.
        skipped : bool
            The track was skipped rather than played to its end.
        entry_id : int, optional
            Only if this entry is still the current one (a voice player reporting the end
            of the track it played, which a skip may have replaced meanwhile).

        Returns
        -------
        QueueItem or None
            The new current track; None when the queue ran out (or ``entry_id`` was no
            longer current: then nothing changed).
        """
        async with self._writing(guild_id) as session:
            playing = await self._playing(session, guild_id)
            if entry_id is not None and (playing is None or playing.id != entry_id):
                return None
            now = utcnow()
            if playing is not None:
                playing.state = "skipped" if skipped else "played"
                playing.finished_at = now
            following = await session.scalar(
                select(QueueEntry).where(QueueEntry.guild_id == str(guild_id),
                                         QueueEntry.state == "queued")
                .order_by(QueueEntry.id).limit(1))
            if following is not None:
                following.state, following.started_at = "playing", now
        changed = playing is not None or following is not None
        if changed:
            self._notify(guild_id)
        return await self.current(guild_id)

    async def remove(self, guild_id: int, position: int) -> QueueItem:
        """Take the waiting track at ``position`` (1 = next) out of the queue.

        Raises
        ------
        ServiceError
            No track waits at that position.
        """
        waiting = await self.waiting(guild_id)
        if not 1 <= position <= len(waiting):
            where = f"positions 1 to {len(waiting)}" if waiting else "nothing is waiting"
            raise ServiceError(f"no track at position {position} ({where})")
        item = waiting[position - 1]
        async with self._writing(guild_id) as session:
            done = await session.execute(
                update(QueueEntry).where(QueueEntry.id == item.entry_id,
                                         QueueEntry.state == "queued")
                .values(state="removed", finished_at=utcnow()))
        if not getattr(done, "rowcount", 1):
            raise ServiceError(f"the track at position {position} just left the queue")
        self._notify(guild_id)
        return item

    async def clear(self, guild_id: int) -> int:
        """Remove every waiting track (the current one plays on); returns how many."""
        async with self._writing(guild_id) as session:
            done = await session.execute(
                update(QueueEntry).where(QueueEntry.guild_id == str(guild_id),
                                         QueueEntry.state == "queued")
                .values(state="removed", finished_at=utcnow()))
        count = int(getattr(done, "rowcount", 0) or 0)
        if count:
            self._notify(guild_id)
        return count

    # --- following -----------------------------------------------------------------------

    def changes(self, guild_id: int) -> Changes:
        """Subscribe to the guild's changes, from now on (see :class:`Changes`)."""
        return Changes(self._subscribers[guild_id])

    def _notify(self, guild_id: int) -> None:
        for inbox in self._subscribers.get(guild_id, ()):
            if inbox.empty():
                inbox.put_nowait(None)

    @contextlib.asynccontextmanager
    async def _writing(self, guild_id: int) -> AsyncIterator[AsyncSession]:
        """One transaction on a guild's queue at a time (two adds must not both start).

        The database refusing the write (locked past the busy timeout, disk full) is a
        ServiceError naming the queue and the reason; nothing of the transaction is stored.
        """
        async with self._locks[guild_id], \
                self._service.transaction(f"queue of guild {guild_id}") as session:
            yield session

    @staticmethod
    async def _playing(session: AsyncSession, guild_id: int) -> QueueEntry | None:
        found: QueueEntry | None = await session.scalar(
            select(QueueEntry).where(QueueEntry.guild_id == str(guild_id),
                                     QueueEntry.state == "playing").limit(1))
        return found


class Changes:
    """A subscription to one guild's queue: iterate it to wait for each change.

    It is registered when created, so a change made right after is not lost; changes made
    while the consumer is busy are merged into one. :meth:`close` ends it.
    """

    def __init__(self, subscribers: set[asyncio.Queue[None]]) -> None:
        self._subscribers = subscribers
        self._inbox: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        subscribers.add(self._inbox)

    def __aiter__(self) -> Changes:
        return self

    async def __anext__(self) -> None:
        if self._inbox not in self._subscribers:
            raise StopAsyncIteration
        await self._inbox.get()

    def close(self) -> None:
        """Stop receiving changes."""
        self._subscribers.discard(self._inbox)


class GuildPlayer:
    """One guild's queue as a :class:`~bot.service.player.Player`.

    Tracks are stored tracks, named by their reference (``track:<id>``): the listener
    classifies them through the service and the auto-DJ queues any stored track.

    Parameters
    ----------
    queues : GuildQueues
        Where the queue is stored.
    guild_id : int
        The guild.
    """

    def __init__(self, queues: GuildQueues, guild_id: int) -> None:
        self.queues = queues
        self.guild_id = guild_id

    @property
    def scope(self) -> str:
        """``discord:<guild id>``, as the slash commands record their history."""
        return f"discord:{self.guild_id}"

    async def current(self) -> QueuedTrack | None:
        """The current track (None when the queue is empty)."""
        item = await self.queues.current(self.guild_id)
        return _queued(item) if item is not None else None

    async def upcoming(self, limit: int | None = None) -> list[QueuedTrack]:
        """The waiting tracks, in order."""
        items = await self.queues.items(self.guild_id, None if limit is None else limit + 1)
        waiting = [_queued(i) for i in items if not i.playing]
        return waiting if limit is None else waiting[:limit]

    async def add(self, track: str | Path, after_current: bool = False) -> int:
        """Queue a stored track (``track:<id>``) at the end, as the auto-DJ.

        Raises
        ------
        PlayerError
            Not a stored track's reference, ``after_current`` (this queue only appends),
            or the queue refused (full).
        """
        track_id = parse_ref(str(track)) if isinstance(track, str) else None
        if track_id is None:
            raise PlayerError(f"the Discord queue takes stored tracks (track:<id>), not {track}")
        if after_current:
            raise PlayerError("the Discord queue adds tracks at its end only")
        try:
            (item,) = await self.queues.add(self.guild_id, AUTO_DJ, [track_id])
        except ServiceError as exc:
            raise PlayerError(str(exc)) from exc
        return item.entry_id

    def playable(self, pick: Pick) -> str:
        """Any stored track can be queued: its reference."""
        return track_ref(pick.track.track_id)

    def events(self) -> AsyncIterator[frozenset[str]]:
        """Each change of the queue, reported as every subsystem (the queue holds both the
        current track and the waiting ones); the subscription starts now."""
        changes = self.queues.changes(self.guild_id)

        async def follow() -> AsyncIterator[frozenset[str]]:
            try:
                async for _ in changes:
                    yield SUBSYSTEMS
            finally:
                changes.close()

        return follow()


def _queued(item: QueueItem) -> QueuedTrack:
    return QueuedTrack(item.entry_id, item.position, track_ref(item.track_id), item.title,
                       item.artist or None, item.duration_s, None,
                       "a track of the library, not a file", ref=track_ref(item.track_id))
