"""Suggestions and journeys over the stored library: the service side of :mod:`bot.recommend`.

The recommender is pure; this module loads its candidates (every track the live models
classified), resolves a "like this one" query through the service, and keeps what a playlist
needs (where each track is, how long it lasts) beside each pick. Asked with a scope (``cli``,
``discord:<guild id>``, ``mpd:<host:port>``), it leaves out what was recently played or
suggested there and remembers what it suggests (:mod:`bot.service.history`); with
``recommend.top_up`` on, a request the library cannot fill searches the catalogue
(:mod:`bot.service.topup`). A shorter answer than asked says why in :attr:`Picks.note`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.recommend import (
    Candidate,
    MoodRecommender,
    RecommendError,
    Route,
    Target,
    journey,
    quadrant_of,
)
from bot.recommend.values import mood, quadrant_at, target_point
from bot.service.errors import ServiceError
from bot.service.history import History, freshest
from bot.service.topup import CatalogueTopUp, TopUpReport
from bot.settings import RecommendSettings
from bot.storage.store import StoredMood

if TYPE_CHECKING:
    from bot.service.mood import MoodService


@dataclass(frozen=True)
class Pick:
    """A recommended track: who, its mood, why, and where to play it.

    ``target`` is the journey step's (valence, arousal) waypoint; None for plain lists.
    """

    track: StoredMood
    reason: str
    target: tuple[float, float] | None = None


class Picks(list[Pick]):
    """Picks, best (or first) first: a list, with a note when it is shorter than asked.

    Parameters
    ----------
    picks : iterable of Pick
        The picks.
    note : str, optional
        One line saying how many were found of how many, and why not more.
    """

    def __init__(self, picks: Iterable[Pick] = (), note: str | None = None) -> None:
        super().__init__(picks)
        self.note = note


def candidate(stored: StoredMood) -> Candidate:
    """A stored mood as the recommender sees it."""
    embedding = tuple(stored.embedding) if stored.embedding else None
    return Candidate(stored.track_id, stored.title, stored.artist, stored.quadrant,
                     stored.valence, stored.arousal, stored.confidence, embedding)


def target_quadrant(target: Target) -> str:
    """The quadrant a request is for: the mood's, the point's, or the seed track's."""
    if isinstance(target, Candidate):
        return target.quadrant
    if isinstance(target, str):
        return quadrant_of(target)
    return quadrant_at(target_point(target))


class Recommendations:
    """Recommendations for one service (:attr:`MoodService.recommendations`).

    Parameters
    ----------
    service : MoodService
        Where the library is stored and queries are classified.
    recommender : MoodRecommender, optional
        Scoring settings (artist cap, confidence floor, ...).
    settings : RecommendSettings, optional
        History window and catalogue top-up (default: off top-up, a window of 50).
    """

    def __init__(self, service: MoodService, recommender: MoodRecommender | None = None, *,
                 settings: RecommendSettings | None = None) -> None:
        self._service = service
        self.recommender = recommender or MoodRecommender()
        self.settings = settings or RecommendSettings.model_construct()
        self.history = History(service.store, self.settings.history_window)

    async def library(self) -> list[StoredMood]:
        """The stored tracks the live models classified."""
        return await self._service.store.moods(self._service.models_key)

    async def played(self, scope: str, track_ids: Sequence[int]) -> None:
        """Remember that tracks were played in a scope (they are not suggested there again
        for a while).

        Parameters
        ----------
        scope : str
            ``discord:<guild id>``, ``mpd:<host:port>``, ``cli``.
        track_ids : sequence of int
            The tracks, in the order played.

        Raises
        ------
        ServiceError
            Bad scope, or a track that does not exist.
        """
        await self.history.remember(scope, "played", track_ids)

    async def _target(self, target: Target | str, library: list[StoredMood]) -> Target:
        """A mood word or point as given; any other text is a track to classify ("like")."""
        if not isinstance(target, str):
            return target
        try:
            quadrant_of(target)
            return target
        except RecommendError:
            pass  # not a mood: a file, URL or search text
        found = await self._service.classify(target)
        for stored in library:
            if stored.track_id == found.track_id:
                return candidate(stored)
        result = found.result
        return Candidate(found.track_id, found.title, found.artist, result.quadrant.value,
                         result.valence, result.arousal, result.confidence)

    async def recommend(self, target: Target | str, n: int = 10, *, seed: int = 0,
                        scope: str | None = None) -> Picks:
        """Up to ``n`` stored tracks for a mood, a point, or like a track (file/URL/search).

        Parameters
        ----------
        target : str, (float, float) or Candidate
            A mood word or quadrant, a (valence, arousal) point, or a track to classify (a
            file, URL or search text: "like this one").
        n : int
            How many.
        seed : int
            Another seed, another mix of equally good tracks.
        scope : str, optional
            Where the picks will be heard (``cli``, ``discord:<guild id>``, ...): the tracks
            last played or suggested there are left out, and these picks are remembered.

        Returns
        -------
        Picks
            Best first; ``note`` says why when there are fewer than ``n``.

        Raises
        ------
        ServiceError
            The library is empty or too small, or the seed track cannot be classified (one
            line).
        """
        library = await self.library()
        wanted = await self._resolved(target, library)
        recent = await self.history.recent(scope)
        report: TopUpReport | None = None
        if self.settings.top_up:
            short = n - self._stored_fits(library, wanted, n, seed)
            if short > 0:
                report = await self._top_up(wanted, short)
                library = await self.library() if report.classified else library
        try:
            picks = self._fresh(lambda banned: self._suggest(library, wanted, n, seed, banned),
                                n, recent)
        except ServiceError as exc:
            if report is None:
                raise
            raise ServiceError(f"{exc}; {report.describe()}") from exc
        await self.history.remember(scope, "suggested", [p.track.track_id for p in picks])
        return Picks(picks, _shortfall(len(picks), n, wanted, report))

    async def journey(self, start: Target | str, end: Target | str, steps: int = 5, *,
                      route: Route = "line", seed: int = 0,
                      scope: str | None = None) -> Picks:
        """``steps`` stored tracks walking from one mood (or track) to another.

        Parameters
        ----------
        start, end : str, (float, float) or Candidate
            Moods, points, or tracks to classify (a named track is never left out).
        steps : int
            Tracks in the journey.
        route : {"line", "circumplex"}
            Straight across the valence/arousal plane, or around the circle.
        seed : int
            Orders near-ties.
        scope : str, optional
            As for :meth:`recommend`.

        Returns
        -------
        Picks
            In order; ``note`` says why when there are fewer than ``steps``.

        Raises
        ------
        ServiceError
            As for :meth:`recommend`.
        """
        library = await self.library()
        ends = [await self._resolved(t, library) for t in (start, end)]
        named = {e.track_id for e in ends if isinstance(e, Candidate)}
        recent = [t for t in await self.history.recent(scope) if t not in named]
        candidates = [candidate(m) for m in library]

        def walk(banned: frozenset[int]) -> list[Pick]:
            path = journey(candidates, ends[0], ends[1], steps, route=route,
                           max_jump=self.recommender.max_jump, exclude=banned, seed=seed)
            by_id = {m.track_id: m for m in library}
            return [Pick(by_id[s.candidate.track_id],
                         f"step {i + 1}: toward valence {s.target[0]:.2f}, "
                         f"arousal {s.target[1]:.2f}", s.target)
                    for i, s in enumerate(path)]

        picks = self._fresh(walk, steps, recent)
        await self.history.remember(scope, "suggested", [p.track.track_id for p in picks])
        note = None if len(picks) >= steps else (
            f"found {len(picks)} of {steps} steps: the library holds no more usable tracks "
            "(scan or classify more tracks)")
        return Picks(picks, note)

    async def _resolved(self, target: Target | str, library: list[StoredMood]) -> Target:
        """The target, resolved and checked (a point off the plane is refused here)."""
        try:
            resolved = await self._target(target, library)
            target_point(resolved)
        except RecommendError as exc:
            raise ServiceError(str(exc)) from exc
        return resolved

    def _suggest(self, library: list[StoredMood], wanted: Target, n: int, seed: int,
                 banned: frozenset[int]) -> list[Pick]:
        """The recommender's picks, leaving out ``banned`` (raises :class:`RecommendError`)."""
        found = self.recommender.recommend([candidate(m) for m in library], wanted, n,
                                           exclude=banned, seed=seed)
        by_id = {m.track_id: m for m in library}
        return [Pick(by_id[p.candidate.track_id], p.reason) for p in found]

    def _stored_fits(self, library: list[StoredMood], wanted: Target, n: int,
                     seed: int) -> int:
        """How many of ``n`` the stored library can give, history aside (0 when none)."""
        try:
            return len(self._suggest(library, wanted, n, seed, frozenset()))
        except RecommendError:
            return 0

    def _fresh(self, ask: Callable[[frozenset[int]], list[Pick]], wanted: int,
               recent: list[int]) -> list[Pick]:
        """:func:`freshest` with the recommender's errors as service errors."""
        try:
            return freshest(ask, wanted, recent)
        except RecommendError as exc:
            raise ServiceError(str(exc)) from exc

    async def _top_up(self, wanted: Target, missing: int) -> TopUpReport:
        top_up = CatalogueTopUp(self._service, max_previews=self.settings.top_up_max_previews,
                                min_confidence=self.recommender.min_confidence)
        return await top_up.run(target_quadrant(wanted), missing)


def _shortfall(found: int, wanted: int, target: Target,
               report: TopUpReport | None) -> str | None:
    """The note of a short list: how many of how many, and why not more."""
    if found >= wanted:
        return None
    what = f"{mood(quadrant_of(target))} " if isinstance(target, str) else ""
    head = f"found {found} of {wanted}: the library holds no more {what}tracks that fit"
    if report is not None:
        return f"{head}; {report.describe()}"
    return (f"{head} (scan or classify more tracks, or set MER_TOP_UP=true to search "
            "Deezer/iTunes)")
