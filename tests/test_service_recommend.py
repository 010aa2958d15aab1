"""Recommendations through the service: the listening history per scope, and the top-up from
the catalogue (fake Deezer and iTunes on 127.0.0.1, real classification by the tiny models)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import soundfile as sf
from sqlalchemy import func, select

from bot.recommend import RecommendError
from bot.recommend.values import mood
from bot.service import MoodService, ServiceError
from bot.service.history import exclusions, freshest
from bot.service.recommendations import Recommendations
from bot.service.topup import MOOD_QUERIES
from bot.settings import RecommendSettings, Settings
from bot.storage.migrate import upgrade
from bot.storage.models import TrackEvent
from tests.fakes.guards import LoopbackGuard, install_loopback_guard
from tests.fakes.servers import FakeDeezer, FakeItunes, Song
from tests.synth import SR, mood_clip

#: Nothing listens here: a catalogue that is "offline" (connection refused).
CLOSED = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def guard(monkeypatch: pytest.MonkeyPatch) -> LoopbackGuard:
    return install_loopback_guard(monkeypatch)


def _settings(tmp: Path, models: Path, *, deezer: str = CLOSED, itunes: str = CLOSED,
              **recommend: object) -> Settings:
    settings = Settings.load(
        None, data_dir=tmp, engine={"models_dir": models, "workers": 1},
        sources={"source_order": ["deezer", "itunes"], "allow_private_urls": True,
                 "http_retries": 0, "deezer_api_base": deezer, "itunes_api_base": itunes,
                 "http_timeout_s": 5.0},
        recommend=recommend)
    upgrade(settings.database_url)
    return settings


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    for i in range(8):
        sf.write(folder / f"Artist {i} - Song {i}.wav",
                 mood_clip(f"Q{i % 4 + 1}", seconds=6.0, seed=400 + i), SR)
    return folder


def _mp3(quadrant: str, seed: int = 500) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, mood_clip(quadrant, seconds=8.0, seed=seed), SR, format="MP3")
    return buffer.getvalue()


def _song(n: int, title: str) -> Song:
    return Song(title, f"Catalogue Artist {n}", "Album", f"GBAYE99{n:05d}", 200,
                f"spotify{n}", 7_000_000 + n, 8_000_000 + n)


async def _events(service: MoodService, scope: str) -> int:
    async with service.store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(TrackEvent)
                                        .where(TrackEvent.scope == scope)) or 0)


# --- the window, without the service ---------------------------------------------------------


def test_exclusions_shrink_from_the_oldest() -> None:
    assert exclusions([5, 4, 3, 2, 1]) == [
        frozenset({5, 4, 3, 2, 1}), frozenset({5, 4}), frozenset({5}), frozenset()]
    assert exclusions([]) == [frozenset()]


def test_freshest_gives_back_the_oldest_tracks_first() -> None:
    pool = list(range(1, 7))  # six tracks; the history holds 1..5, 1 the most recent

    def asker(n: int) -> Callable[[frozenset[int]], list[int]]:
        def ask(banned: frozenset[int]) -> list[int]:
            left = [t for t in pool if t not in banned]
            if not left:
                raise RecommendError("nothing left")
            return left[:n]
        return ask

    history = [1, 2, 3, 4, 5]
    assert freshest(asker(3), 3, []) == [1, 2, 3]
    assert freshest(asker(1), 1, history) == [6]
    # The whole window leaves one track: its older half (3, 4, 5) comes back first.
    assert freshest(asker(3), 3, history) == [3, 4, 5]
    assert freshest(asker(10), 10, history) == pool  # never more than the library
    # No answer is full: the longest wins, and the freshest among the longest.
    assert freshest(lambda banned: asker(10)(banned)[:3], 10, history) == [3, 4, 5]

    def empty(banned: frozenset[int]) -> list[int]:
        raise RecommendError("the library is empty")

    with pytest.raises(RecommendError, match="empty"):
        freshest(empty, 3, [1, 2])


# --- history through the service ---------------------------------------------------------------


async def test_a_scope_does_not_hear_the_same_tracks_again(
        tmp_path: Path, tiny_models_dir: Path, library: Path) -> None:
    settings = _settings(tmp_path, tiny_models_dir)
    async with await MoodService.create(settings, allow_local_files=True) as service:
        await service.scan(library)
        recs = service.recommendations
        usable = [m for m in await recs.library()
                  if m.confidence >= recs.recommender.min_confidence]
        assert len(usable) >= 6, "the tiny models should be sure of most synthetic clips"
        centre = (0.5, 0.5)

        first = await recs.recommend(centre, 3, scope="discord:1")
        second = await recs.recommend(centre, 3, scope="discord:1")
        ids = [{p.track.track_id for p in picks} for picks in (first, second)]
        assert len(ids[0]) == len(ids[1]) == 3 and not ids[0] & ids[1]
        assert first.note is None and second.note is None
        # No scope, or another scope: no history, the same list as the first time.
        assert [p.track for p in await recs.recommend(centre, 3)] == [p.track for p in first]
        other = await recs.recommend(centre, 3, scope="discord:2")
        assert [p.track for p in other] == [p.track for p in first]
        assert await _events(service, "discord:1") == 6

        # The window would leave too few: the oldest picks come back, the list stays full.
        everything = await recs.recommend(centre, len(usable), scope="discord:1")
        assert len(everything) == len(usable) and everything.note is None

        # Tracks a front-end played are left out as well.
        await recs.played("mpd:localhost:6600", [p.track.track_id for p in first])
        after = await recs.recommend(centre, 3, scope="mpd:localhost:6600")
        assert not {p.track.track_id for p in after} & ids[0]

        with pytest.raises(ServiceError, match="history scope") as caught:
            await recs.recommend(centre, 3, scope="")
        assert "\n" not in str(caught.value)


async def test_journeys_avoid_the_history_but_keep_a_named_track(
        tmp_path: Path, tiny_models_dir: Path, library: Path) -> None:
    settings = _settings(tmp_path, tiny_models_dir)
    async with await MoodService.create(settings, allow_local_files=True) as service:
        await service.scan(library)
        recs = service.recommendations
        first = await recs.journey("sad", "happy", 3, scope="cli")
        second = await recs.journey("sad", "happy", 3, scope="cli")
        assert len(first) == len(second) == 3
        assert not {p.track.track_id for p in first} & {p.track.track_id for p in second}
        seed = sorted(library.iterdir())[0]
        await recs.played("cli", [m.track_id for m in await recs.library()])
        named = await recs.journey(str(seed), "happy", 3, scope="cli")
        # Everything was played, the seed too; named now, it starts the journey.
        assert named[0].track.location is not None
        assert Path(named[0].track.location).resolve() == seed.resolve()


async def test_a_window_of_zero_is_no_history(tmp_path: Path, tiny_models_dir: Path,
                                              library: Path) -> None:
    settings = _settings(tmp_path, tiny_models_dir, history_window=0)
    async with await MoodService.create(settings, allow_local_files=True) as service:
        await service.scan(library)
        recs = service.recommendations
        assert recs.settings.history_window == 0
        lists = [[p.track.track_id for p in await recs.recommend((0.5, 0.5), 3, scope="cli")]
                 for _ in range(2)]
        await recs.played("cli", lists[0])
        assert lists[0] == lists[1] and await _events(service, "cli") == 0
        # The same library and calls with a window: the setting decides, not the caller.
        windowed = Recommendations(service, settings=RecommendSettings.model_construct(
            history_window=50))
        again = [[p.track.track_id for p in await windowed.recommend((0.5, 0.5), 3,
                                                                     scope="cli")]
                 for _ in range(2)]
        assert again[0] == lists[0] and not set(again[0]) & set(again[1])


# --- top-up from the catalogue ----------------------------------------------------------------


async def _calibrate(service: MoodService, tmp_path: Path) -> tuple[str, bytes, bytes]:
    """A quadrant the tiny models find in one clip, that clip, and a clip of another mood."""
    clips = {q: _mp3(q) for q in ("Q4", "Q2")}
    found = {}
    for q, data in clips.items():
        path = tmp_path / f"probe-{q}.mp3"
        path.write_bytes(data)
        found[q] = service.engine.classify(str(path))
    fit, other = found["Q4"], found["Q2"]
    assert fit.quadrant != other.quadrant and fit.confidence >= 0.4, \
        "the tiny models should tell the two clips apart"
    return fit.quadrant.value, clips["Q4"], clips["Q2"]


async def test_top_up_classifies_catalogue_tracks_that_fit(
        tmp_path: Path, tiny_models_dir: Path) -> None:
    async with FakeDeezer() as deezer, FakeItunes() as itunes:
        settings = _settings(tmp_path, tiny_models_dir, deezer=deezer.base, itunes=itunes.base,
                             top_up=True)
        async with await MoodService.create(settings) as service:
            quadrant, fit, other = await _calibrate(service, tmp_path)
            word = MOOD_QUERIES[quadrant][0]
            deezer.catalogue = (_song(1, f"{word} one"), _song(2, f"{word} two"),
                                _song(3, f"{word} three"))
            deezer.audio_by_id = {7_000_001: fit, 7_000_002: other, 7_000_003: fit}
            itunes.catalogue = (_song(4, f"{word} four"),)
            itunes.audio_by_id = {8_000_004: fit}

            picks = await service.recommendations.recommend(mood(quadrant), 3, scope="cli")
            assert picks.note is None
            assert sorted(p.track.title for p in picks) == [
                f"{word} four", f"{word} one", f"{word} three"]
            assert {p.track.provider for p in picks} == {"deezer", "itunes"}
            assert all(p.track.quadrant == quadrant for p in picks)
            stored = await service.recommendations.library()
            assert len(stored) == 4  # the misfit is stored too, just not suggested
            assert (deezer.hits["/search"], itunes.hits["/search"]) == (1, 1)
            assert deezer.hits_under("/preview/") == 3 and itunes.hits_under("/preview/") == 1

            # The library now holds enough: no search the second time (history aside).
            again = await service.recommendations.recommend(mood(quadrant), 3)
            assert len(again) == 3 and deezer.hits["/search"] == 1


async def test_top_up_stops_at_its_budget(tmp_path: Path, tiny_models_dir: Path) -> None:
    async with FakeDeezer() as deezer:
        settings = _settings(tmp_path, tiny_models_dir, deezer=deezer.base, top_up=True,
                             top_up_max_previews=2)
        async with await MoodService.create(settings) as service:
            quadrant, fit, other = await _calibrate(service, tmp_path)
            word = MOOD_QUERIES[quadrant][0]
            deezer.catalogue = tuple(_song(n, f"{word} {n}") for n in range(1, 6))
            deezer.audio_by_id = {7_000_001: fit, 7_000_002: other, 7_000_003: fit}
            picks = await service.recommendations.recommend(mood(quadrant), 3)
            assert deezer.hits_under("/preview/") == 2
            assert len(picks) == 1
            assert picks.note == (
                f"found 1 of 3: the library holds no more {mood(quadrant)} tracks that fit; "
                f"2 catalogue previews classified, 1 of them {mood(quadrant)}")


async def test_offline_it_says_how_many_it_found(tmp_path: Path, tiny_models_dir: Path,
                                                 library: Path) -> None:
    async with FakeDeezer() as deezer:
        deezer.fail("/search", 500, times=None)
        settings = _settings(tmp_path, tiny_models_dir, deezer=deezer.base, top_up=True)
        async with await MoodService.create(settings, allow_local_files=True) as service:
            with pytest.raises(ServiceError) as caught:  # nothing stored, nothing found
                await service.recommendations.recommend("calm", 5)
            message = str(caught.value)
            assert message.startswith("the library is empty") and "\n" not in message
            assert "the catalogue could not be searched (deezer: " in message

            await service.scan(library)
            stored = await service.recommendations.library()
            quadrant = max(stored, key=lambda m: m.confidence).quadrant
            picks = await service.recommendations.recommend(mood(quadrant), 5)
            assert 1 <= len(picks) < 5
            assert picks.note is not None and "\n" not in picks.note
            assert re.fullmatch(
                rf"found {len(picks)} of 5: the library holds no more {mood(quadrant)} "
                r"tracks that fit; the catalogue could not be searched \(deezer: .*500.*; "
                r"itunes: .+\)", picks.note), picks.note
            # A failing source is asked once per request, not once per search word.
            assert deezer.hits["/search"] == 2


async def test_without_top_up_the_catalogue_is_left_alone(
        tmp_path: Path, tiny_models_dir: Path, library: Path) -> None:
    async with FakeDeezer() as deezer:
        settings = _settings(tmp_path, tiny_models_dir, deezer=deezer.base)
        assert settings.recommend.top_up is False
        async with await MoodService.create(settings, allow_local_files=True) as service:
            await service.scan(library)
            stored = await service.recommendations.library()
            word = mood(max(stored, key=lambda m: m.confidence).quadrant)
            picks = await service.recommendations.recommend(word, 10)
            assert len(picks) < 10 and picks.note is not None
            assert picks.note.startswith(f"found {len(picks)} of 10: the library holds no "
                                         f"more {word} tracks that fit")
            assert "MER_TOP_UP=true" in picks.note
    assert deezer.hits_under("/") == 0

