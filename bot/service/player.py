"""What the service needs from a music player: the :class:`Player` protocol and its values.

A player front-end (``bot.player``, MPD today) implements :class:`Player`; the service-layer
listener that classifies the queue ahead, suggests and appends tracks is written against it and
never against MPD itself. The protocol is deliberately small: what is playing, what comes next,
add a track, and a stream of change events. Errors a player raises are :class:`PlayerError`
(a :class:`~bot.service.errors.ServiceError`: one line, safe to show to a user).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from bot.service.errors import ServiceError

if TYPE_CHECKING:
    from bot.service.recommendations import Pick

#: The change events a player reports: the playback state or current track (``player``),
#: the queue (``playlist``), the music library (``database``).
SUBSYSTEMS: frozenset[str] = frozenset({"player", "playlist", "database"})


class PlayerError(ServiceError):
    """The player refused a command or could not be used; the message says why, on one line."""


class PlayerUnavailable(PlayerError):
    """The player cannot be reached right now (not connected, or reconnecting)."""


class NoLocalFile(PlayerError):
    """A song of the player has no local file: no file under the music root, or a stream.

    Attributes
    ----------
    uri : str
        The player's song URI.
    """

    def __init__(self, uri: str, message: str) -> None:
        super().__init__(message)
        self.uri = uri


class OutsideMusicRoot(PlayerError):
    """A local file lies outside the player's music root, so the player cannot add it.

    Attributes
    ----------
    path : Path
        The file that was asked for.
    """

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class QueuedTrack:
    """One entry of a player's queue.

    Attributes
    ----------
    song_id : int
        The player's id of this queue entry (stable while it stays queued).
    position : int
        Its place in the queue, from 0.
    uri : str
        The player's song URI (relative to the music root, or a stream URL).
    title, artist : str or None
        Its tags, when it has them (several artists are joined with ``", "``).
    duration_s : float or None
        Its length in seconds, when known (streams have none).
    path : Path or None
        Its local file, resolved under the music root; None when there is none.
    no_file_reason : str or None
        Why ``path`` is None (one line); None when ``path`` is set.
    ref : str or None
        A stored track's reference (``track:<id>``) when the player queues tracks of the
        library rather than files (the Discord queue); the service classifies it instead of
        ``path``.
    """

    song_id: int
    position: int
    uri: str
    title: str | None
    artist: str | None
    duration_s: float | None
    path: Path | None
    no_file_reason: str | None = None
    ref: str | None = None

    def classify_query(self) -> str:
        """What the service classifies for this track: its stored reference, else its file.

        Raises
        ------
        NoLocalFile
            Neither a reference nor a local file.
        """
        return self.ref if self.ref is not None else str(self.local_file())

    def local_file(self) -> Path:
        """The track's local file.

        Returns
        -------
        Path
            ``path``.

        Raises
        ------
        NoLocalFile
            The track has no local file (``no_file_reason`` says why).
        """
        if self.path is None:
            raise NoLocalFile(self.uri, self.no_file_reason or f"{self.uri!r} has no local file")
        return self.path


@runtime_checkable
class Player(Protocol):
    """A music player the service can follow and steer.

    Implementations reconnect on their own when the player goes away; meanwhile their
    methods raise :class:`PlayerUnavailable` and :meth:`events` waits.
    """

    @property
    def scope(self) -> str:
        """Where the music is heard, for the listening history: ``mpd:127.0.0.1:6600``."""
        ...

    async def current(self) -> QueuedTrack | None:
        """The current track (playing, paused, or next to play when stopped); None if none.

        Raises
        ------
        PlayerError
            The player cannot be reached or refused.
        """
        ...

    async def upcoming(self, limit: int | None = None) -> list[QueuedTrack]:
        """The tracks queued after the current one, in queue order.

        Parameters
        ----------
        limit : int, optional
            At most this many (None: all).

        Raises
        ------
        PlayerError
            The player cannot be reached or refused.
        """
        ...

    async def add(self, track: str | Path, after_current: bool = False) -> int:
        """Queue a track, right after the current one or at the end.

        Parameters
        ----------
        track : str or Path
            A song URI of the player, or a local file under its music root.
        after_current : bool
            Insert right after the current track (at the end when there is none).

        Returns
        -------
        int
            The new queue entry's ``song_id``.

        Raises
        ------
        OutsideMusicRoot
            ``track`` is a file the player cannot reach.
        PlayerError
            The player cannot be reached or refused (an unknown URI, say).
        """
        ...

    def playable(self, pick: Pick) -> str | Path | None:
        """What :meth:`add` takes to queue a recommended track; None when it cannot.

        A player of files answers the pick's local file (:func:`local_pick`); the Discord
        queue, which plays any stored track, its reference.
        """
        ...

    def events(self) -> AsyncIterator[frozenset[str]]:
        """The player's changes, as sets of :data:`SUBSYSTEMS` names, until it is closed.

        The subscription starts when this is called. Changes that arrive while the
        consumer is busy are merged into one set; after a reconnection every subsystem is
        reported, since anything may have changed meanwhile.
        """
        ...


def local_pick(pick: Pick) -> Path | None:
    """The local file of a recommended track (None: a catalogue track, not a file).

    Parameters
    ----------
    pick : Pick
        A recommendation.

    Returns
    -------
    Path or None
        The file a player of local files can queue.
    """
    stored = pick.track
    if stored.provider != "local" or not stored.location:
        return None
    return Path(stored.location)
