"""The plain values the recommender reads and returns, its error, and its shared geometry.

Quadrant centres sit at the middle of each quarter of the valence/arousal square (``Q1``
(0.75, 0.75), ``Q2`` (0.25, 0.75), ``Q3`` (0.25, 0.25), ``Q4`` (0.75, 0.25)), with the
engine's definitions valence = P(Q1)+P(Q4) and arousal = P(Q1)+P(Q2).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from mer_models.moods import MOOD_NAMES, QUADRANTS


class RecommendError(ValueError):
    """A request the recommender cannot answer; the message is one line, safe for users."""


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

    @property
    def point(self) -> tuple[float, float]:
        """``(valence, arousal)``."""
        return (self.valence, self.arousal)


@dataclass(frozen=True)
class Suggestion:
    """A recommended track and why, in one line.

    Attributes
    ----------
    candidate : Candidate
    reason : str
        e.g. ``"sad: valence 0.18, arousal 0.25 (confidence 0.81)"``.
    distance : float
        Valence/arousal distance from the target point (quadrant centre, point or seed track).
    similarity : float, optional
        Cosine similarity of the embeddings to the seed track's ("like" only, when both have one).
    """

    candidate: Candidate
    reason: str
    distance: float
    similarity: float | None = None


@dataclass(frozen=True)
class JourneyStep:
    """One step of a mood journey.

    Attributes
    ----------
    position : float
        Path parameter of the waypoint in [0, 1] (0 = start, 1 = end).
    target : tuple of float
        The waypoint ``(valence, arousal)``.
    candidate : Candidate
        The track played at this step.
    distance : float
        Valence/arousal distance between the track and the waypoint.
    """

    position: float
    target: tuple[float, float]
    candidate: Candidate
    distance: float


#: A quadrant (``"Q1"``), a mood word (``"sad"``), a ``(valence, arousal)`` point, or a track.
Target = str | tuple[float, float] | Candidate

CENTRES: Final[dict[str, tuple[float, float]]] = {
    "Q1": (0.75, 0.75), "Q2": (0.25, 0.75), "Q3": (0.25, 0.25), "Q4": (0.75, 0.25)}
_WORDS: Final[dict[str, str]] = {
    **{q.value.lower(): q.value for q in QUADRANTS},
    **{name: q.value for q, name in MOOD_NAMES.items()},
    # The names the README's table uses beside the short mood names.
    "energetic": "Q1", "angry": "Q2", "relaxed": "Q4",
}


def mood(quadrant: str) -> str:
    """User-facing mood word of a quadrant (``"Q3"`` -> ``"sad"``)."""
    return MOOD_NAMES[QUADRANTS[int(quadrant[1]) - 1]]


def quadrant_of(word: str) -> str:
    """``Q1`` .. ``Q4`` for a quadrant name or mood word (case-insensitive)."""
    found = _WORDS.get(word.strip().lower())
    if found is None:
        raise RecommendError(f"unknown mood {word!r}: expected one of Q1..Q4, happy, tense, "
                             "sad, calm (or energetic, angry, relaxed)")
    return found


def quadrant_at(point: tuple[float, float]) -> str:
    """The quadrant a ``(valence, arousal)`` point lies in (0.5 counts as high)."""
    valence, arousal = point
    if arousal >= 0.5:
        return "Q1" if valence >= 0.5 else "Q2"
    return "Q4" if valence >= 0.5 else "Q3"


def check_point(point: Sequence[float], what: str = "target") -> tuple[float, float]:
    """A validated ``(valence, arousal)`` pair in [0, 1]^2."""
    try:
        valence, arousal = (float(x) for x in point)
    except (TypeError, ValueError):
        raise RecommendError(f"{what} must be a mood, a track or (valence, arousal), "
                             f"got {point!r}") from None
    if not all(math.isfinite(x) and 0.0 <= x <= 1.0 for x in (valence, arousal)):
        raise RecommendError(f"{what} ({valence}, {arousal}) is outside [0, 1]^2")
    return (valence, arousal)


def target_point(target: Target) -> tuple[float, float]:
    """The point of a quadrant (its centre), a mood word, a point or a track."""
    if isinstance(target, Candidate):
        return target.point
    if isinstance(target, str):
        return CENTRES[quadrant_of(target)]
    return check_point(target)


def library(candidates: Iterable[Candidate], extra: Iterable[Candidate] = ()) -> list[Candidate]:
    """Validated candidates, one per track id (the first wins), at least two of them."""
    seen: dict[int, Candidate] = {}
    for c in [*candidates, *extra]:
        if not isinstance(c, Candidate):
            raise RecommendError(f"candidates must be Candidate values, got {type(c).__name__}")
        if c.track_id in seen:
            continue
        if c.quadrant not in CENTRES:
            raise RecommendError(f"track {c.track_id}: quadrant {c.quadrant!r} is not Q1..Q4")
        check_point(c.point, f"track {c.track_id}'s mood")
        if not 0.0 <= c.confidence <= 1.0:  # also rejects NaN
            raise RecommendError(f"track {c.track_id}: confidence {c.confidence!r} is not in "
                                 "[0, 1]")
        seen[c.track_id] = c
    if not seen:
        raise RecommendError("the library is empty: classify or scan some tracks first")
    if len(seen) == 1:
        raise RecommendError("the library has only one track: classify or scan more first")
    return list(seen.values())


def check_exclude(exclude: Collection[int]) -> frozenset[int]:
    """``exclude`` as a set of track ids (a lone id is a common slip: say so)."""
    if isinstance(exclude, int | str):
        raise RecommendError(f"exclude must be a collection of track ids, got {exclude!r}")
    return frozenset(exclude)


def check_fraction(value: float, name: str) -> float:
    """A finite number in [0, 1]."""
    if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise RecommendError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def check_count(value: int, name: str, minimum: int) -> int:
    """An integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise RecommendError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def distances(points: NDArray[np.float64], point: tuple[float, float]) -> NDArray[np.float64]:
    """Euclidean distances of ``points`` (n, 2) to ``point``."""
    return np.hypot(points[:, 0] - point[0], points[:, 1] - point[1])


def ranking(scores: NDArray[np.float64], resolution: float, seed: int) -> NDArray[np.intp]:
    """Indices of ``scores``, best (lowest) first; near-ties shuffled by ``seed``.

    Scores are rounded to ``resolution`` first: differences smaller than the models can tell
    apart should give variety across seeds, not follow the order the database returned.
    """
    # Any int is a seed: negative ones are folded into the generator's unsigned range.
    shuffled = np.random.default_rng(int(seed) & 0xFFFF_FFFF_FFFF_FFFF).permutation(len(scores))
    buckets = np.round(scores[shuffled] / resolution)
    return shuffled[np.lexsort((np.arange(len(scores)), buckets))]
