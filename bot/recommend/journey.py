"""``journey``: a sequence of stored tracks that walks from one mood (or track) to another.

Waypoints are evenly spaced along a path in the valence/arousal plane: ``line`` is the
straight segment; ``circumplex`` goes around the centre (0.5, 0.5) of Russell's circle, its
radius interpolated between the two ends, the way that avoids the tense quadrant (Q2) unless
an end lies in it (then the shorter way; at exactly half a turn, the way through positive
valence). A track end is played first (last); a mood end is its surest track, since sure
tracks sit near the corners of the plane, not at the quadrant centres. Each other waypoint
takes the nearest unused track within ``max_jump``, the radius doubling until one is found,
so a sparse library still fills every step; the picks are then put in path order.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from bot.recommend.values import (
    Candidate,
    JourneyStep,
    RecommendError,
    Target,
    check_count,
    check_exclude,
    check_fraction,
    distances,
    library,
    quadrant_at,
    quadrant_of,
    ranking,
    target_point,
)

Route = Literal["line", "circumplex"]
ROUTES: Final = ("line", "circumplex")
#: First search radius around a waypoint: about one quadrant-centre spacing / 3.
DEFAULT_MAX_JUMP = 0.15
_CENTRE = np.array([0.5, 0.5])
_TENSE_ANGLE = 0.75 * math.pi  # direction of the Q2 centre seen from (0.5, 0.5)
_SAMPLES = 401  # path samples used to project a track onto the path
_TIE_STEP = 0.01
_CONFIDENCE_STEP = 0.05  # as in recommend: sure tracks within 0.05 are tied


class Path:
    """A path through the valence/arousal plane, parametrised by ``t`` in [0, 1].

    Parameters
    ----------
    start, end : (float, float)
        ``(valence, arousal)`` of the two ends.
    route : {"line", "circumplex"}
    """

    def __init__(self, start: tuple[float, float], end: tuple[float, float],
                 route: Route = "line") -> None:
        if route not in ROUTES:
            raise RecommendError(f"route must be one of {', '.join(ROUTES)}, got {route!r}")
        self.start, self.end = np.asarray(start, float), np.asarray(end, float)
        self.route = route
        a, b = self.start - _CENTRE, self.end - _CENTRE
        self.radii = (float(np.hypot(*a)), float(np.hypot(*b)))
        angles = [math.atan2(a[1], a[0]), math.atan2(b[1], b[0])]
        # An end at the centre has no direction: it takes the other end's.
        if self.radii[0] < 1e-9:
            angles[0] = angles[1]
        if self.radii[1] < 1e-9:
            angles[1] = angles[0]
        self.angle = angles[0]
        self.sweep = _sweep(angles[0], angles[1], quadrant_at(start) == "Q2"
                            or quadrant_at(end) == "Q2")

    def at(self, t: NDArray[np.float64]) -> NDArray[np.float64]:
        """Points (n, 2) of the path at parameters ``t`` (n,)."""
        t = np.asarray(t, dtype=np.float64)
        if self.route == "line":
            out = self.start + t[:, None] * (self.end - self.start)
        else:
            radius = self.radii[0] + t * (self.radii[1] - self.radii[0])
            angle = self.angle + t * self.sweep
            direction = np.stack([np.cos(angle), np.sin(angle)], axis=1)
            # Shrink the radius where the circle leaves the unit square; the angle is kept, so
            # the waypoints still turn monotonically.
            with np.errstate(divide="ignore"):
                room = np.min(np.where(np.abs(direction) > 1e-12, 0.5 / np.abs(direction),
                                       np.inf), axis=1)
            out = _CENTRE + np.minimum(radius, room)[:, None] * direction
        # The ends exactly, not up to rounding: a path rebuilt from them is the same path.
        out[t == 0.0], out[t == 1.0] = self.start, self.end
        return np.asarray(out)

    def project(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """Parameter ``t`` of the path sample nearest each of ``points`` (n, 2)."""
        grid = np.linspace(0.0, 1.0, _SAMPLES)
        samples = self.at(grid)
        gaps = np.linalg.norm(points[:, None, :] - samples[None, :, :], axis=2)
        return np.asarray(grid[np.argmin(gaps, axis=1)])


def _sweep(start: float, end: float, touches_tense: bool) -> float:
    """Signed angle from ``start`` to ``end``: the way avoiding Q2, else the shorter way."""
    ccw = (end - start) % (2 * math.pi)
    if ccw < 1e-12:
        return 0.0
    cw = ccw - 2 * math.pi
    if not touches_tense:
        through_tense = (_TENSE_ANGLE - start) % (2 * math.pi) < ccw
        return cw if through_tense else ccw
    if math.isclose(ccw, math.pi):
        # Half a turn either way: go through positive valence (cos > 0 at the middle).
        return ccw if math.cos(start + ccw / 2) > 0 else cw
    return ccw if ccw < math.pi else cw


def journey(candidates: Sequence[Candidate], start: Target, end: Target, steps: int = 5, *,
            route: Route = "line", max_jump: float = DEFAULT_MAX_JUMP,
            exclude: Collection[int] = frozenset(), min_confidence: float = 0.0,
            seed: int = 0) -> list[JourneyStep]:
    """Tracks that walk from ``start`` to ``end`` in ``steps`` waypoints.

    Parameters
    ----------
    candidates : sequence of Candidate
        The library (at least two tracks).
    start, end : str, (float, float) or Candidate
        A track (played as the first or last step unless excluded), a quadrant or mood word
        (its surest usable track, near-ties by ``seed``; its centre when it has none), or a
        ``(valence, arousal)`` point. The path runs between the two points.
    steps : int
        Number of steps, at least 2; a library with fewer usable tracks gives one step per
        usable track, still spread from start to end.
    route : {"line", "circumplex"}
        Straight across the plane, or around the circle avoiding the tense quadrant.
    max_jump : float
        First search radius around each waypoint, in (0, 1]; doubled while nothing is in it.
    exclude : collection of int
        Track ids never used.
    min_confidence : float
        Tracks whose quadrant probability is lower are skipped (0 by default: waypoints
        between quadrants are best served by tracks between quadrants).
    seed : int
        Orders near-ties.

    Returns
    -------
    list of JourneyStep
        In order; ``position`` increases from 0 to 1 and no track repeats.

    Raises
    ------
    RecommendError
        Empty or one-track library, fewer than two usable tracks, unknown mood, bad parameter.
    """
    ends = [e for e in (start, end) if isinstance(e, Candidate)]
    pool = library(candidates, ends)
    steps = check_count(steps, "steps", 2)
    banned = check_exclude(exclude)
    min_confidence = check_fraction(min_confidence, "min_confidence")
    if not isinstance(max_jump, int | float) or not 0.0 < max_jump <= 1.0:
        raise RecommendError(f"max_jump must be in (0, 1], got {max_jump!r}")
    given = {e.track_id for e in ends}  # a track the user named is never too unsure
    usable = [c for c in pool if c.track_id not in banned
              and (c.confidence >= min_confidence or c.track_id in given)]
    if len(usable) < 2:
        raise RecommendError(f"a journey needs at least 2 usable tracks, found {len(usable)} "
                             f"of {len(pool)} (excluded or below confidence "
                             f"{min_confidence:.2f})")
    first = _anchor(start, usable, set(), seed)
    last = _anchor(end, usable, set() if first is None else {first.track_id}, seed)
    path = Path(target_point(start) if first is None else first.point,
                target_point(end) if last is None else last.point, route)
    count = min(steps, len(usable))
    positions = np.linspace(0.0, 1.0, count)
    targets = path.at(positions)

    chosen: list[Candidate | None] = [first, *[None] * (count - 2), last]
    pinned = {c.track_id for c in chosen if c is not None}
    free = [c for c in usable if c.track_id not in pinned]
    spots = np.array([c.point for c in free], dtype=np.float64)
    taken = np.zeros(len(free), dtype=bool)
    for i in range(count):
        if chosen[i] is None:
            pick = _nearest(spots, taken, targets[i], max_jump, seed + i)
            taken[pick] = True
            chosen[i] = free[pick]
    tracks = _in_path_order([c for c in chosen if c is not None], path, pinned)
    return [JourneyStep(float(t), (float(w[0]), float(w[1])), c, math.dist(c.point, w))
            for t, w, c in zip(positions, targets, tracks, strict=True)]


def _anchor(end: Target, usable: list[Candidate], taken: set[int], seed: int
            ) -> Candidate | None:
    """The track an end is pinned to: the track itself, or the surest track of a mood.

    A mood's centre is a poor first step: tracks the model is sure about sit near the corners
    of the plane, so the tracks nearest (0.25, 0.25) are the ambiguous ones (docs/RECOMMENDER.md
    measures both).
    """
    if isinstance(end, Candidate):
        return next((c for c in usable if c.track_id == end.track_id
                     and c.track_id not in taken), None)
    if not isinstance(end, str):
        return None
    quadrant = quadrant_of(end)
    fits = [c for c in usable if c.quadrant == quadrant and c.track_id not in taken]
    if not fits:
        return None
    return fits[int(ranking(1.0 - np.array([c.confidence for c in fits]), _CONFIDENCE_STEP,
                            seed)[0])]


def _nearest(spots: NDArray[np.float64], taken: NDArray[np.bool_], waypoint: NDArray[np.float64],
             radius: float, seed: int) -> int:
    """Index of the nearest untaken spot within ``radius``, widening it while none is."""
    gaps = distances(spots, (float(waypoint[0]), float(waypoint[1])))
    gaps[taken] = np.inf
    while not np.any(gaps <= radius):
        radius *= 2.0  # terminates: an untaken spot exists and the square's diagonal is finite
    inside = np.flatnonzero(gaps <= radius)
    return int(inside[ranking(gaps[inside], _TIE_STEP, seed)[0]])


def _in_path_order(tracks: list[Candidate], path: Path, pinned: set[int]) -> list[Candidate]:
    """The chosen tracks sorted along the path, pinned end tracks kept at the ends.

    Greedy picks for close waypoints can land out of order (the nearest track to waypoint 3
    may sit behind the one of waypoint 2); sorting them by their projection on the path keeps
    the music moving one way.
    """
    first = tracks[0] if tracks[0].track_id in pinned else None
    last = tracks[-1] if tracks[-1].track_id in pinned and len(tracks) > 1 else None
    middle = tracks[(first is not None):len(tracks) - (last is not None)]
    if middle:
        where = path.project(np.array([c.point for c in middle], dtype=np.float64))
        middle = [middle[i] for i in np.argsort(where, kind="stable")]
    return [*([first] if first is not None else []), *middle,
            *([last] if last is not None else [])]
