"""Recommendations over stored tracks: pure functions, no I/O (the service loads candidates).

- :func:`recommend`: a short list for a mood, a ``(valence, arousal)`` point, or a seed track
  ("like this one"), with an artist cap, exclusions and a one-line reason per track.
- :func:`journey`: tracks that walk from one mood or track to another, straight across the
  valence/arousal plane or around Russell's circle.
- :class:`MoodRecommender`: both with the service's defaults, behind the :class:`Recommender`
  protocol a front-end or player plug-in is written against.

Nothing here may import the service, storage or sources: it sees plain :class:`Candidate`
values. Quadrant centres and the scoring are documented in docs/RECOMMENDER.md.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.recommend.journey import DEFAULT_MAX_JUMP, ROUTES, Path, Route, journey
from bot.recommend.suggest import (
    DEFAULT_CONFIDENCE_WEIGHT,
    DEFAULT_LIKE_WEIGHT,
    DEFAULT_MIN_CONFIDENCE,
    recommend,
)
from bot.recommend.values import (
    CENTRES,
    Candidate,
    JourneyStep,
    RecommendError,
    Suggestion,
    Target,
    quadrant_of,
)

__all__ = ["CENTRES", "ROUTES", "Candidate", "JourneyStep", "MoodRecommender", "Path",
           "RecommendError", "Recommender", "Route", "Suggestion", "Target", "journey",
           "quadrant_of", "recommend"]


class Recommender(Protocol):
    """What the service calls to suggest tracks and journeys from a list of candidates."""

    def recommend(self, candidates: Sequence[Candidate], target: Target, n: int = 10, *,
                  exclude: Collection[int] = frozenset(), seed: int = 0) -> list[Suggestion]:
        """Up to ``n`` candidates for a mood, a point or a seed track."""
        ...

    def journey(self, candidates: Sequence[Candidate], start: Target, end: Target,
                steps: int = 5, *, route: Route = "line",
                exclude: Collection[int] = frozenset(), seed: int = 0) -> list[JourneyStep]:
        """``steps`` tracks from ``start`` to ``end``."""
        ...


@dataclass(frozen=True)
class MoodRecommender:
    """:func:`recommend` and :func:`journey` with fixed settings (a :class:`Recommender`)."""

    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    artist_cap: int = 1
    like_weight: float = DEFAULT_LIKE_WEIGHT
    confidence_weight: float = DEFAULT_CONFIDENCE_WEIGHT
    max_jump: float = DEFAULT_MAX_JUMP

    def recommend(self, candidates: Sequence[Candidate], target: Target, n: int = 10, *,
                  exclude: Collection[int] = frozenset(), seed: int = 0) -> list[Suggestion]:
        """See :func:`recommend`."""
        return recommend(candidates, target, n, min_confidence=self.min_confidence,
                         artist_cap=self.artist_cap, exclude=exclude, seed=seed,
                         like_weight=self.like_weight,
                         confidence_weight=self.confidence_weight)

    def journey(self, candidates: Sequence[Candidate], start: Target, end: Target,
                steps: int = 5, *, route: Route = "line",
                exclude: Collection[int] = frozenset(), seed: int = 0) -> list[JourneyStep]:
        """See :func:`journey`."""
        return journey(candidates, start, end, steps, route=route, max_jump=self.max_jump,
                       exclude=exclude, seed=seed)
