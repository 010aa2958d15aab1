"""The listening history of a scope: which tracks to leave out of suggestions, and recording them.

A scope is where music is heard, named by its front-end: ``cli``, ``discord:<guild id>``,
``mpd:<host:port>``. The window is a count, ``recommend.history_window`` (``MER_HISTORY_WINDOW``):
the tracks most recently played or suggested there are not suggested again. A count rather
than a duration, because it is what a listener means by "no repeats" (the last 50 songs, not
whatever a busy guild played in 24 hours) and because it stays below the size of a library
however often it is asked. When the window would leave fewer tracks than asked, its older half
comes back, then the older half of the rest, and so on (:func:`freshest`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from bot.recommend import RecommendError
from bot.service.errors import ServiceError
from bot.storage.errors import InvalidRecordError, StorageError
from bot.storage.store import Store

_T = TypeVar("_T")


class History:
    """Read and write the listening history of scopes, within a window.

    Parameters
    ----------
    store : Store
        Where events are kept.
    window : int
        How many of the tracks last seen in a scope are left out; 0: no history (nothing is
        read or recorded).
    """

    def __init__(self, store: Store, window: int) -> None:
        self._store = store
        self.window = window

    async def recent(self, scope: str | None) -> list[int]:
        """The tracks last played or suggested in ``scope``, most recent first.

        Returns
        -------
        list of int
            At most ``window`` track ids; empty without a scope or with the history off.

        Raises
        ------
        ServiceError
            The scope is empty or longer than 128 characters.
        """
        if scope is None or self.window <= 0:
            return []
        try:
            return await self._store.recent_track_ids(scope, self.window)
        except InvalidRecordError as exc:
            raise ServiceError(str(exc)) from exc

    async def remember(self, scope: str | None, kind: str, track_ids: Sequence[int]) -> None:
        """Record tracks ``played`` or ``suggested`` in ``scope`` (nothing without a scope or
        with the history off).

        Raises
        ------
        ServiceError
            Bad scope or kind, a track that does not exist, or the database refused the
            write.
        """
        if scope is None or self.window <= 0 or not track_ids:
            return
        try:
            await self._store.record_track_events(scope, kind, track_ids)
        except StorageError as exc:  # bad scope or kind, unknown track, locked, disk full
            raise ServiceError(str(exc)) from exc


def exclusions(recent: Sequence[int]) -> list[frozenset[int]]:
    """Sets of track ids to leave out, tried in turn: the whole window, its newer half, ...,
    the newest one, nothing.

    Parameters
    ----------
    recent : sequence of int
        Track ids, most recent first.

    Returns
    -------
    list of frozenset of int
        Shrinking sets; the last one is empty.
    """
    sets: list[frozenset[int]] = []
    size = len(recent)
    while size > 0:
        sets.append(frozenset(recent[:size]))
        size //= 2
    sets.append(frozenset())
    return sets


def freshest(ask: Callable[[frozenset[int]], list[_T]], wanted: int,
             recent: Sequence[int]) -> list[_T]:
    """The answer that leaves out the most recent tracks and still has ``wanted`` items.

    Parameters
    ----------
    ask : callable
        The recommender with everything but the exclusions fixed: ``ask(exclude)``.
    wanted : int
        How many items make a full answer.
    recent : sequence of int
        The history, most recent first (see :func:`exclusions`).

    Returns
    -------
    list
        The first full answer as the window shrinks; otherwise the longest one (the freshest
        among equals).

    Raises
    ------
    RecommendError
        Even with nothing left out the recommender has no answer (empty library, ...).
    """
    best: list[_T] = []
    for banned in exclusions(recent):
        try:
            got = ask(banned)
        except RecommendError:
            if banned or best:
                continue
            raise
        if len(got) >= wanted:
            return got
        if len(got) > len(best):
            best = got
    return best
