"""Recommendations over stored tracks: pure functions, no I/O (the service loads candidates).

This package holds the interface the service and the front-ends are written against; the
recommender itself (``recommend``, ``journey``) arrives with its own issue. Nothing here may
import the service, storage or sources: it sees plain :class:`Candidate` values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Candidate:
    """A stored track as the recommender sees it.

    Attributes
    ----------
    track_id : int
        Database id.
    title, artist : str
        Display metadata (the artist also caps repeats in a list).
    quadrant : str
        ``Q1`` .. ``Q4``.
    valence, arousal : float
        In [0, 1].
    confidence : float
        Probability of ``quadrant``.
    embedding : tuple of float, optional
        A learned embedding of the clip, for "tracks like this one".
    """

    track_id: int
    title: str
    artist: str
    quadrant: str
    valence: float
    arousal: float
    confidence: float
    embedding: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Suggestion:
    """A recommended track and why, in one line."""

    candidate: Candidate
    reason: str
    distance: float


class Recommender(Protocol):
    """What the service calls to suggest tracks from a list of candidates."""

    def recommend(self, candidates: Sequence[Candidate], *, valence: float, arousal: float,
                  n: int) -> list[Suggestion]:
        """Up to ``n`` candidates nearest to a point of the valence/arousal plane."""
        ...
