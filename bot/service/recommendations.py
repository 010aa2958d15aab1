"""Suggestions and journeys over the stored library: the service side of :mod:`bot.recommend`.

The recommender is pure; this module loads its candidates (every track the live models
classified), resolves a "like this one" query through the service, and keeps what a playlist
needs (where each track is, how long it lasts) beside each pick.
"""

from __future__ import annotations

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
from bot.service.errors import ServiceError
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


def candidate(mood: StoredMood) -> Candidate:
    """A stored mood as the recommender sees it."""
    embedding = tuple(mood.embedding) if mood.embedding else None
    return Candidate(mood.track_id, mood.title, mood.artist, mood.quadrant, mood.valence,
                     mood.arousal, mood.confidence, embedding)


class Recommendations:
    """Recommendations for one service (:attr:`MoodService.recommendations`).

    Parameters
    ----------
    service : MoodService
        Where the library is stored and queries are classified.
    recommender : MoodRecommender, optional
        Scoring settings (artist cap, confidence floor, ...).
    """

    def __init__(self, service: MoodService, recommender: MoodRecommender | None = None
                 ) -> None:
        self._service = service
        self.recommender = recommender or MoodRecommender()

    async def library(self) -> list[StoredMood]:
        """The stored tracks the live models classified."""
        return await self._service.store.moods(self._service.versions)

    async def _target(self, target: Target | str, library: list[StoredMood]) -> Target:
        """A mood word or point as given; any other text is a track to classify ("like")."""
        if not isinstance(target, str):
            return target
        try:
            quadrant_of(target)
            return target
        except RecommendError:
            pass  # not a mood: a file, URL or search text
        mood = await self._service.classify(target)
        for stored in library:
            if stored.track_id == mood.track_id:
                return candidate(stored)
        result = mood.result
        return Candidate(mood.track_id, mood.title, mood.artist, result.quadrant.value,
                         result.valence, result.arousal, result.confidence)

    async def recommend(self, target: Target | str, n: int = 10, *,
                        seed: int = 0) -> list[Pick]:
        """Up to ``n`` stored tracks for a mood, a point, or like a track (file/URL/search).

        Raises
        ------
        ServiceError
            The library is empty or too small, the mood is unknown, or the seed track
            cannot be classified (one line).
        """
        library = await self.library()
        try:
            wanted = await self._target(target, library)
            picks = self.recommender.recommend([candidate(m) for m in library], wanted, n,
                                               seed=seed)
        except RecommendError as exc:
            raise ServiceError(str(exc)) from exc
        by_id = {m.track_id: m for m in library}
        return [Pick(by_id[p.candidate.track_id], p.reason) for p in picks]

    async def journey(self, start: Target | str, end: Target | str, steps: int = 5, *,
                      route: Route = "line", seed: int = 0) -> list[Pick]:
        """``steps`` stored tracks walking from one mood (or track) to another.

        Raises
        ------
        ServiceError
            As for :meth:`recommend`.
        """
        library = await self.library()
        try:
            ends = [await self._target(t, library) for t in (start, end)]
            walk = journey([candidate(m) for m in library], ends[0], ends[1], steps,
                           route=route, max_jump=self.recommender.max_jump, seed=seed)
        except RecommendError as exc:
            raise ServiceError(str(exc)) from exc
        by_id = {m.track_id: m for m in library}
        return [Pick(by_id[s.candidate.track_id],
                     f"step {i + 1}: toward valence {s.target[0]:.2f}, "
                     f"arousal {s.target[1]:.2f}", s.target)
                for i, s in enumerate(walk)]
