"""bot.recommend: properties of recommend() and journey() over random libraries, and examples."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.recommend import (
    CENTRES,
    Candidate,
    JourneyStep,
    MoodRecommender,
    Path,
    Recommender,
    RecommendError,
    Route,
    Target,
    journey,
    recommend,
)
from bot.recommend.values import quadrant_at

PROPERTY = settings(max_examples=60, deadline=None,  # derandomised: tests/conftest.py
                    suppress_health_check=[HealthCheck.too_slow])
unit = st.floats(0.0, 1.0, allow_nan=False)
moods = st.sampled_from(["Q1", "Q2", "Q3", "Q4", "happy", "tense", "sad", "calm"])
points = st.tuples(unit, unit)


@st.composite
def libraries(draw: st.DrawFn, min_size: int = 2, max_size: int = 30) -> list[Candidate]:
    """Candidates whose quadrant agrees with their point, as the engine stores them."""
    ids = draw(st.lists(st.integers(0, 10_000), min_size=min_size, max_size=max_size,
                        unique=True))
    out = []
    for track_id in ids:
        point = draw(points)
        embedding = draw(st.none() | st.tuples(*[st.floats(-1, 1)] * 4))
        out.append(Candidate(track_id, f"t{track_id}", draw(st.sampled_from("ABCDEFG")),
                             quadrant_at(point), point[0], point[1], draw(unit), embedding))
    return out


def track(track_id: int, valence: float, arousal: float, *, artist: str | None = None,
          confidence: float = 0.9, embedding: tuple[float, ...] | None = None) -> Candidate:
    return Candidate(track_id, f"t{track_id}", artist or f"artist {track_id}",
                     quadrant_at((valence, arousal)), valence, arousal, confidence, embedding)


def grid(size: int = 11) -> list[Candidate]:
    """A regular grid of tracks over the plane, one artist each."""
    values = np.linspace(0.0, 1.0, size)
    return [track(i * size + j, float(v), float(a)) for i, v in enumerate(values)
            for j, a in enumerate(values)]


# --- recommend: properties -------------------------------------------------------------------

@PROPERTY
@given(lib=libraries(), target=moods | points, n=st.integers(1, 12), seed=st.integers(-1000, 10**9),
       data=st.data())
def test_recommend_caps_artists_skips_excluded_and_repeats_itself(
        lib: list[Candidate], target: str | tuple[float, float], n: int, seed: int,
        data: st.DataObject) -> None:
    exclude = frozenset(data.draw(st.sets(st.sampled_from([c.track_id for c in lib]))))
    kwargs = {"min_confidence": 0.0, "exclude": exclude, "seed": seed}
    try:
        got = recommend(lib, target, n, **kwargs)  # type: ignore[arg-type]
    except RecommendError as error:
        assert "no " in str(error) and "left to suggest" in str(error)
        return
    ids = [s.candidate.track_id for s in got]
    assert 1 <= len(ids) <= n
    assert len(set(ids)) == len(ids)
    assert not set(ids) & exclude
    artists = [s.candidate.artist for s in got]
    assert len(set(artists)) == len(artists)
    assert recommend(lib, target, n, **kwargs) == got  # type: ignore[arg-type]
    if isinstance(target, str):
        wanted = {"happy": "Q1", "tense": "Q2", "sad": "Q3", "calm": "Q4"}.get(target, target)
        assert {s.candidate.quadrant for s in got} == {wanted}


@PROPERTY
@given(lib=libraries(min_size=3), seed=st.integers(-1000, 10**9), data=st.data())
def test_like_never_suggests_the_seed_and_respects_min_confidence(
        lib: list[Candidate], seed: int, data: st.DataObject) -> None:
    pick = data.draw(st.sampled_from(lib))
    floor = data.draw(st.floats(0.0, 0.9))
    try:
        got = recommend(lib, pick, 5, min_confidence=floor, seed=seed, artist_cap=2)
    except RecommendError:
        assert sum(c.confidence >= floor and c.track_id != pick.track_id for c in lib) == 0
        return
    assert pick.track_id not in {s.candidate.track_id for s in got}
    assert all(s.candidate.confidence >= floor for s in got)
    assert all(n <= 2 for n in np.unique([s.candidate.artist for s in got],
                                         return_counts=True)[1])


@pytest.mark.parametrize("lib, message", [([], "empty"), ([track(1, 0.2, 0.2)], "only one")])
def test_empty_or_one_track_library_is_a_clear_error(lib: list[Candidate], message: str) -> None:
    with pytest.raises(RecommendError, match=message):
        recommend(lib, "sad")
    with pytest.raises(RecommendError, match=message):
        journey(lib, "sad", "happy", 3)


@pytest.mark.parametrize("call, message", [
    (lambda lib: recommend(lib, "joyful"), "unknown mood 'joyful'"),
    (lambda lib: recommend(lib, (1.5, 0.2)), "outside"),
    (lambda lib: recommend(lib, 3), "must be a mood, a track or"),  # type: ignore[arg-type]
    (lambda lib: recommend([*lib, track(99, 0.5, 0.5, confidence=math.nan)], "sad"),
     "track 99: confidence nan"),
    (lambda lib: recommend(lib, "sad", 0), "n must be"),
    (lambda lib: recommend(lib, "sad", exclude=3),  # type: ignore[arg-type]
     "collection of track ids"),
    (lambda lib: recommend(lib, "sad", min_confidence=2), "min_confidence"),
    (lambda lib: recommend(lib, "sad", exclude={c.track_id for c in lib}), "no sad track left"),
    (lambda lib: journey(lib, "sad", "happy", 1), "steps must be"),
    (lambda lib: journey(lib, "sad", "happy", 4, route="zigzag"),  # type: ignore[arg-type]
     "route must be"),
    (lambda lib: journey(lib, "sad", "bored", 4), "unknown mood 'bored'"),
    (lambda lib: journey(lib, "sad", "happy", 4, max_jump=0), "max_jump"),
    (lambda lib: journey(lib, "sad", "happy", exclude={c.track_id for c in lib[1:]}),
     "at least 2 usable"),
])
def test_bad_requests_are_one_line_errors(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RecommendError, match=message) as caught:
        call(grid(5))
    assert "\n" not in str(caught.value)


# --- recommend: examples ---------------------------------------------------------------------

def test_quadrant_lists_put_the_surest_tracks_first_and_say_why() -> None:
    lib = [track(1, 0.2, 0.2, confidence=0.55), track(2, 0.1, 0.05, confidence=0.97),
           track(3, 0.3, 0.3, confidence=0.81), track(4, 0.9, 0.9, confidence=0.99)]
    got = recommend(lib, "sad", 3)
    assert [s.candidate.track_id for s in got] == [2, 3, 1]
    assert got[1].reason == "sad: valence 0.30, arousal 0.30 (confidence 0.81)"
    assert got[1].distance == pytest.approx(math.dist((0.3, 0.3), CENTRES["Q3"]))


def test_point_lists_are_nearest_first() -> None:
    got = recommend(grid(), (0.7, 0.2), 3)
    assert got[0].candidate.point == pytest.approx((0.7, 0.2))
    assert got[0].reason == "calm: valence 0.70, arousal 0.20, 0.00 from (0.70, 0.20)"
    assert [s.distance for s in got] == sorted(s.distance for s in got)


def test_like_prefers_the_closer_embedding_and_says_so() -> None:
    # Far-off tracks give the library a mean to remove, as a real library would.
    rng = np.random.default_rng(0)
    noise = [track(100 + i, 0.2, 0.9, embedding=tuple(rng.normal(size=4)))
             for i in range(12)]
    seed = track(1, 0.72, 0.22, embedding=(1.0, 0.0, 0.0, 0.0))
    twin = track(2, 0.70, 0.25, embedding=(0.9, 0.1, 0.0, 0.0))
    other = track(3, 0.71, 0.23, embedding=(0.0, 0.0, 1.0, 0.0))  # nearer in mood, unlike
    got = recommend([seed, twin, other, *noise], seed, 2)
    assert [s.candidate.track_id for s in got] == [2, 3]
    assert got[0].reason == "calm like your pick: valence 0.70, arousal 0.25; similar timbre"
    assert got[0].similarity is not None and got[0].similarity > got[1].similarity  # type: ignore[operator]
    assert "similar timbre" not in got[1].reason


def test_like_without_embeddings_falls_back_to_mood_distance() -> None:
    seed = track(1, 0.2, 0.8)
    got = recommend([seed, track(2, 0.9, 0.1), track(3, 0.25, 0.75), track(4, 0.5, 0.5)],
                    seed, 3, confidence_weight=0.0)
    assert [s.candidate.track_id for s in got] == [3, 4, 2]
    assert got[0].similarity is None
    assert got[1].reason.startswith("happy, near your tense pick")


def test_seed_shuffles_ties_instead_of_following_input_order() -> None:
    lib = [track(i, 0.1, 0.1, confidence=0.95) for i in range(30)]
    orders = {tuple(s.candidate.track_id for s in recommend(lib, "sad", 5, seed=seed))
              for seed in range(6)}
    assert len(orders) > 1  # input order alone would give (0, 1, 2, 3, 4) every time


def test_artist_cap_allows_more_than_one_when_asked() -> None:
    lib = [track(i, 0.1, 0.1, artist="same") for i in range(5)]
    assert len(recommend(lib, "sad", 5)) == 1
    assert len(recommend(lib, "sad", 5, artist_cap=3)) == 3


# --- journey: properties ---------------------------------------------------------------------

def _along(steps: list[JourneyStep], route: str) -> np.ndarray:
    """Progress of each target along its path: projection (line) or turned angle."""
    targets = np.array([s.target for s in steps])
    if route == "line":
        direction = targets[-1] - targets[0]
        return np.asarray((targets - targets[0]) @ direction)
    turned = np.unwrap(np.arctan2(targets[:, 1] - 0.5, targets[:, 0] - 0.5))
    return np.asarray((turned - turned[0]) * np.sign(turned[-1] - turned[0] or 1.0))


@PROPERTY
@given(lib=libraries(), start=moods | points, end=moods | points,
       steps=st.integers(2, 12), route=st.sampled_from(["line", "circumplex"]),
       seed=st.integers(0, 9), data=st.data())
def test_journeys_never_repeat_fill_every_step_and_move_one_way(
        lib: list[Candidate], start: Target, end: Target,
        steps: int, route: Route, seed: int, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        start = data.draw(st.sampled_from(lib))
    exclude = frozenset(data.draw(st.sets(st.sampled_from([c.track_id for c in lib]),
                                          max_size=3)))
    usable = len({c.track_id for c in lib} - exclude)
    if usable < 2:
        with pytest.raises(RecommendError, match="at least 2 usable"):
            journey(lib, start, end, steps, route=route, exclude=exclude)
        return
    walk = journey(lib, start, end, steps, route=route, exclude=exclude, seed=seed)
    ids = [s.candidate.track_id for s in walk]
    assert len(ids) == min(steps, usable)
    assert len(set(ids)) == len(ids)
    assert not set(ids) & exclude
    positions = [s.position for s in walk]
    assert positions[0] == 0.0 and positions[-1] == 1.0
    assert all(b > a for a, b in itertools.pairwise(positions))
    assert np.all(np.diff(_along(walk, route)) >= -1e-9)
    # The tracks, too, move one way along the path (greedy picks are put in path order),
    # unless both ends sit on one point: a path of length 0 has no direction.
    path = Path(walk[0].target, walk[-1].target, route)
    if walk[0].target != walk[-1].target:
        assert np.all(np.diff(path.project(np.array([s.candidate.point for s in walk]))) >= 0)
    assert all(s.distance == pytest.approx(math.dist(s.candidate.point, s.target)) for s in walk)
    if isinstance(start, Candidate) and start.track_id not in exclude:
        assert ids[0] == start.track_id


@PROPERTY
@given(start=points, end=points, steps=st.integers(3, 20))
def test_circumplex_never_crosses_tense_unless_an_end_is_tense(
        start: tuple[float, float], end: tuple[float, float], steps: int) -> None:
    inside = Path(start, end, "circumplex").at(np.linspace(0, 1, steps * 10))
    tense = (inside[:, 0] < 0.5 - 1e-9) & (inside[:, 1] > 0.5 + 1e-9)
    if "Q2" not in (quadrant_at(start), quadrant_at(end)):
        assert not tense.any()
    assert np.all((inside >= -1e-9) & (inside <= 1 + 1e-9))


# --- journey: examples -----------------------------------------------------------------------

def test_sad_to_happy_around_the_circle_goes_through_calm() -> None:
    walk = journey(grid(), "sad", "happy", 5, route="circumplex")
    quadrants = [quadrant_at(s.target) for s in walk]
    assert quadrants[0] == "Q3" and quadrants[-1] == "Q1"
    assert "Q4" in quadrants and "Q2" not in quadrants
    assert "Q2" not in {s.candidate.quadrant for s in walk}


def test_half_a_turn_into_tense_goes_through_positive_valence() -> None:
    path = Path(CENTRES["Q4"], CENTRES["Q2"], "circumplex")
    valence, arousal = path.at(np.array([0.5]))[0]
    assert quadrant_at((valence, arousal)) == "Q1"


def test_mood_ends_are_the_surest_tracks_of_the_mood() -> None:
    lib = [*grid(5), track(90, 0.05, 0.05, confidence=0.99), track(91, 0.95, 0.9,
                                                                    confidence=0.99)]
    walk = journey(lib, "sad", "happy", 4)
    assert (walk[0].candidate.track_id, walk[-1].candidate.track_id) == (90, 91)
    assert walk[0].distance == 0.0


def test_a_sparse_library_widens_the_search_and_still_fills_every_step() -> None:
    lib = [track(1, 0.0, 0.0), track(2, 0.05, 0.1), track(3, 1.0, 1.0), track(4, 0.9, 0.95)]
    walk = journey(lib, (0.0, 0.0), (1.0, 1.0), 4, max_jump=0.01)
    assert [s.candidate.track_id for s in walk] == [1, 2, 4, 3]
    walk = journey(lib, (0.0, 0.0), (1.0, 1.0), 9)
    assert [s.position for s in walk] == pytest.approx([0, 1 / 3, 2 / 3, 1])


def test_mood_recommender_is_a_recommender() -> None:
    recommender: Recommender = MoodRecommender(min_confidence=0.0)
    assert recommender.recommend(grid(5), "calm", 2)
    assert len(recommender.journey(grid(5), "calm", "tense", 3, route="circumplex")) == 3


def test_a_journey_whose_ends_share_a_point_still_fills_every_step() -> None:
    """Found by hypothesis: from a track to "sad" when the surest sad track sits on the same
    point; the path has no length, every track is still used once, the ends stay pinned."""
    start, middle, twin = (track(0, 0.3125, 0.0, confidence=0.0),
                           track(1, 0.0, 0.5557, confidence=0.0),
                           track(2, 0.3125, 0.0, confidence=0.0))
    walk = journey([start, middle, twin], start, "Q3", 3, route="circumplex")
    assert [s.candidate.track_id for s in walk] == [0, 1, 2]
    assert [s.position for s in walk] == [0.0, 0.5, 1.0]
