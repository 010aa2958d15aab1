"""``recommend``: a short list of stored tracks for a mood, a point or "more like this one"."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence

import numpy as np
from numpy.typing import NDArray

from bot.recommend.values import (
    CENTRES,
    Candidate,
    RecommendError,
    Suggestion,
    Target,
    check_count,
    check_exclude,
    check_fraction,
    check_point,
    distances,
    library,
    mood,
    quadrant_of,
    ranking,
    target_point,
)

#: Below this the argmax of four probabilities says little (chance is 0.25).
DEFAULT_MIN_CONFIDENCE = 0.4
#: Weight of the valence/arousal distance against the embedding distance in "like".
DEFAULT_LIKE_WEIGHT = 0.5
#: Weight of (1 - confidence) in "like": an unsure track near the seed is often truly
#: elsewhere (docs/RECOMMENDER.md measures 0 and 0.5 too).
DEFAULT_CONFIDENCE_WEIGHT = 0.25
#: Centred cosine above which the reason says "similar timbre".
SIMILAR_TIMBRE = 0.3
#: Centring the embeddings needs enough of them to estimate a mean worth removing.
MIN_CENTRED = 10
#: Score resolutions under which candidates count as tied (then the seed orders them).
_CONFIDENCE_STEP, _DISTANCE_STEP = 0.05, 0.02


def recommend(candidates: Sequence[Candidate], target: Target, n: int = 10, *,
              min_confidence: float = DEFAULT_MIN_CONFIDENCE, artist_cap: int = 1,
              exclude: Collection[int] = frozenset(), seed: int = 0,
              like_weight: float = DEFAULT_LIKE_WEIGHT,
              confidence_weight: float = DEFAULT_CONFIDENCE_WEIGHT) -> list[Suggestion]:
    """Up to ``n`` stored tracks for a target, each with a one-line reason.

    Parameters
    ----------
    candidates : sequence of Candidate
        The library (at least two tracks; a repeated track id counts once).
    target : str, (float, float) or Candidate
        A quadrant or mood word (tracks of that quadrant, the most confident first), a
        ``(valence, arousal)`` point in [0, 1]^2 (the nearest tracks), or a seed track
        ("like this one": valence/arousal distance mixed with embedding cosine distance).
    n : int
        Longest list returned; a quadrant with fewer tracks gives a shorter list.
    min_confidence : float
        Tracks whose quadrant probability is lower are skipped.
    artist_cap : int
        Most tracks by one artist in the list (an empty artist name is never capped).
    exclude : collection of int
        Track ids never suggested (recently played or suggested).
    seed : int
        Orders near-ties: the same seed gives the same list.
    like_weight : float
        Weight of the valence/arousal distance in "like", in [0, 1]; the rest goes to the
        embedding.
    confidence_weight : float
        Weight of ``1 - confidence`` added to the "like" score, in [0, 1].

    Returns
    -------
    list of Suggestion
        Best first.

    Raises
    ------
    RecommendError
        Empty or one-track library, unknown mood, bad parameter, or nothing left to suggest.
    """
    pool = library(candidates)
    n = check_count(n, "n", 1)
    artist_cap = check_count(artist_cap, "artist_cap", 1)
    min_confidence = check_fraction(min_confidence, "min_confidence")
    like_weight = check_fraction(like_weight, "like_weight")
    confidence_weight = check_fraction(confidence_weight, "confidence_weight")
    banned = check_exclude(exclude)
    quadrant = None
    if isinstance(target, Candidate):
        banned |= {target.track_id}
        point = check_point(target.point, "the seed track's mood")
    elif isinstance(target, str):
        quadrant = quadrant_of(target)
        point = CENTRES[quadrant]
    else:
        point = target_point(target)

    eligible = [c for c in pool if c.track_id not in banned and c.confidence >= min_confidence
                and (quadrant is None or c.quadrant == quadrant)]
    if not eligible:
        raise RecommendError(_nothing_left(pool, banned, min_confidence, quadrant))
    spots = np.array([c.point for c in eligible], dtype=np.float64)
    near = distances(spots, point)
    similarity: list[float | None] = [None] * len(eligible)
    if quadrant is not None:
        # Every track of the quadrant fits; the surest ones first. Distance to the centre
        # would prefer ambiguous tracks: a sure Q1 track sits near (1, 1), not (0.75, 0.75).
        order = ranking(1.0 - np.array([c.confidence for c in eligible]), _CONFIDENCE_STEP,
                        seed)
    elif isinstance(target, Candidate):
        similarity = _similarities(target, eligible, pool)
        # No embedding: no evidence either way, scored as orthogonal (cosine 0).
        unlike = np.array([(1.0 - (s if s is not None else 0.0)) / 2.0 for s in similarity])
        score = like_weight * near / math.sqrt(2.0) + (1.0 - like_weight) * unlike
        if all(s is None for s in similarity):
            score = near / math.sqrt(2.0)
        unsure = 1.0 - np.array([c.confidence for c in eligible])
        order = ranking(score + confidence_weight * unsure, _DISTANCE_STEP / 2.0, seed)
    else:
        order = ranking(near, _DISTANCE_STEP, seed)

    chosen: list[Suggestion] = []
    per_artist: Counter[str] = Counter()
    for i in order:
        c = eligible[i]
        artist = (c.artist or "").strip().casefold()
        if artist and per_artist[artist] >= artist_cap:
            continue
        per_artist[artist] += 1
        chosen.append(Suggestion(c, _reason(c, target, point, similarity[i]), float(near[i]),
                                 similarity[i]))
        if len(chosen) == n:
            break
    return chosen


def _similarities(seed: Candidate, eligible: list[Candidate], pool: list[Candidate]
                  ) -> list[float | None]:
    """Cosine similarity of each eligible track's embedding to the seed's (None: no embedding).

    Learned embeddings (ReLU activations) share a large common component that makes every
    raw cosine high; over a library of at least ``MIN_CENTRED`` embeddings the library mean
    is removed first, so the cosine measures what sets tracks apart.
    """
    reference = _vector(seed.embedding)
    if reference is None:
        return [None] * len(eligible)
    usable = {c.track_id: v for c in [*pool, seed]
              if (v := _vector(c.embedding)) is not None and v.shape == reference.shape}
    if len(usable) >= MIN_CENTRED:
        mean = np.mean(list(usable.values()), axis=0)
        reference = reference - mean
        usable = {k: v - mean for k, v in usable.items()}
    out: list[float | None] = []
    for c in eligible:
        v = usable.get(c.track_id)
        norms = float(np.linalg.norm(v) * np.linalg.norm(reference)) if v is not None else 0.0
        out.append(float(np.dot(v, reference)) / norms if v is not None and norms > 0 else None)
    return out


def _vector(embedding: tuple[float, ...] | None) -> NDArray[np.float64] | None:
    if not embedding:
        return None
    v = np.asarray(embedding, dtype=np.float64)
    return v if v.ndim == 1 and np.all(np.isfinite(v)) else None


def _reason(c: Candidate, target: Target, point: tuple[float, float],
            similarity: float | None) -> str:
    where = f"valence {c.valence:.2f}, arousal {c.arousal:.2f}"
    if isinstance(target, Candidate):
        head = (f"{mood(c.quadrant)} like your pick" if c.quadrant == target.quadrant
                else f"{mood(c.quadrant)}, near your {mood(target.quadrant)} pick")
        timbre = "; similar timbre" if similarity is not None and similarity >= SIMILAR_TIMBRE \
            else ""
        return f"{head}: {where}{timbre}"
    if isinstance(target, str):
        return f"{mood(c.quadrant)}: {where} (confidence {c.confidence:.2f})"
    return (f"{mood(c.quadrant)}: {where}, {math.dist(c.point, point):.2f} from "
            f"({point[0]:.2f}, {point[1]:.2f})")


def _nothing_left(pool: list[Candidate], banned: frozenset[int], min_confidence: float,
                  quadrant: str | None) -> str:
    excluded = sum(c.track_id in banned for c in pool)
    unsure = sum(c.track_id not in banned and c.confidence < min_confidence for c in pool)
    what = f"{mood(quadrant)} " if quadrant else ""
    counts = f"{excluded} of {len(pool)} tracks are excluded, {unsure} below confidence " \
             f"{min_confidence:.2f}"
    if quadrant:
        fits = sum(c.quadrant == quadrant for c in pool)
        counts += f", {fits} are {mood(quadrant)}"
    return f"no {what}track left to suggest: {counts}"
