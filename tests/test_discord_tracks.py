"""The service side of the Discord bot: :class:`bot.service.tracks.StoredTracks` (search,
stored moods, similar tracks, users' answers, mood mixes) and the shareable M3U8, on a real
service over a SQLite copy of a small stored library."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.service import MoodService, ServiceError
from bot.service.playlists import shared_m3u8
from bot.service.recommendations import Pick
from bot.service.tracks import StoredTracks, parse_ref, track_ref
from bot.storage.store import StoredMood
from tests.fakes.discord_fixtures import (  # noqa: F401  (SQLite and PostgreSQL)
    service_on_both_backends,
)
from tests.fakes.moodlib import SONGS, VERSIONS


@pytest.fixture
def tracks(service: MoodService) -> StoredTracks:
    return StoredTracks(service)


@pytest.mark.parametrize(("text", "expected"), [
    ("track:12", 12), (" track:3 ", 3), ("track:", None), ("track:x", None),
    ("Artist - track:3", None), ("3", None)])
def test_references(text: str, expected: int | None) -> None:
    assert parse_ref(text) == expected
    if expected is not None:
        assert parse_ref(track_ref(expected)) == expected


@pytest.mark.parametrize(("typed", "titles"), [
    ("", [s.title for s in reversed(SONGS)]),
    ("the brights", ["Slow Morning", "Sunny Day"]),  # an artist, newest first
    ("SUN", ["Sunny Day"]),
    ("brights sun", ["Sunny Day"]),                  # words of artist then title
    ("window", ["Rainy Window"]),                    # a later word of a title
    ("l", ["Lost Letters", "Still Water", "Slow Morning", "Red Alert"]),  # the three ranks
    ("ter", ["Still Water", "Lost Letters"]),        # inside words (newest first)
    ("zzz", []),
])
async def test_search_by_prefix_then_word_then_substring(tracks: StoredTracks, typed: str,
                                                         titles: list[str]) -> None:
    found = await tracks.search(typed)
    assert [m.title for m in found] == titles
    assert all(m.ref == f"track:{m.track_id}" for m in found)


async def test_search_limit_and_cache(tracks: StoredTracks, service: MoodService) -> None:
    assert len(await tracks.search("", limit=3)) == 3
    library = await tracks.library()
    assert await tracks.library() is library            # reused within cache_s
    assert await tracks.library(fresh=True) is not library


async def test_stored_mood_is_answered_without_classifying(tracks: StoredTracks) -> None:
    mood = await tracks.resolve("track:2")
    assert (mood.track_id, mood.title, mood.artist, mood.provider, mood.cached) == (
        2, "Happy Hour", "Joy Band", "deezer", True)
    assert mood.result.mood == "happy"
    assert mood.result.probabilities == SONGS[1].probabilities
    assert mood.result.models == VERSIONS
    assert len(mood.result.windows) == 3 and mood.result.windows[1].start == 5.0


async def test_other_queries_go_to_the_sources(tracks: StoredTracks,
                                               service: MoodService) -> None:
    with pytest.raises(ServiceError, match="no track matches 'Someone - Something'"):
        await tracks.resolve("Someone - Something")
    assert service.resolver.queries == ["Someone - Something"]  # type: ignore[attr-defined]


async def test_a_track_the_live_models_did_not_classify(tracks: StoredTracks,
                                                        service: MoodService) -> None:
    with pytest.raises(ServiceError, match="track 99 is not in the library"):
        await tracks.mood(99)
    service.engine.versions = {"cldnn": "mood-4q-cldnn-2"}  # type: ignore[misc]
    with pytest.raises(ServiceError, match="not been classified by the live models"):
        await tracks.mood(1)


async def test_similar_to_a_stored_track(tracks: StoredTracks) -> None:
    picks = await tracks.similar("track:5", 2)  # Rainy Window: sad
    assert [p.track.title for p in picks] == ["Lost Letters", "Red Alert"]  # nearest first
    with pytest.raises(ServiceError, match="track 42 is not in the library"):
        await tracks.similar("track:42")
    assert await tracks.name_of("track:5") == "Grey Skies - Rainy Window"
    assert await tracks.name_of("Grey Skies - Rainy") == "Grey Skies - Rainy"


async def test_feedback_keeps_one_answer_per_user_and_track(tracks: StoredTracks) -> None:
    assert await tracks.feedback(1, "sad", frontend="discord", user_id="7") == "Q3"
    assert await tracks.feedback(1, "Q4", frontend="discord", user_id="7",
                                 context="777") == "Q4"
    with pytest.raises(ServiceError, match="unknown mood 'blue'"):
        await tracks.feedback(1, "blue", frontend="discord", user_id="7")
    with pytest.raises(ServiceError, match="track 404 does not exist"):
        await tracks.feedback(404, "sad", frontend="discord", user_id="7")


async def test_mood_mix_of_a_scope_over_a_period(tracks: StoredTracks,
                                                 service: MoodService) -> None:
    library = await tracks.mood_mix()
    assert library.counts == {"Q1": 2, "Q2": 2, "Q3": 2, "Q4": 2} and library.scope is None

    long_ago = datetime.now(UTC) - timedelta(days=40)
    await service.store.record_track_events("discord:1", "played", [1, 1, 2, 5], at=long_ago)
    await service.store.record_track_events("discord:1", "suggested", [7])
    await service.store.record_track_events("discord:2", "played", [3])

    ever = await tracks.mood_mix(scope="discord:1")
    assert ever.counts == {"Q1": 2, "Q2": 0, "Q3": 1, "Q4": 1}  # track 1 counts once
    assert ever.total == 4 and ever.share("Q1") == 0.5
    week = await tracks.mood_mix(scope="discord:1", since=datetime.now(UTC) - timedelta(7))
    assert week.counts == {"Q1": 0, "Q2": 0, "Q3": 0, "Q4": 1}
    empty = await tracks.mood_mix(scope="discord:3")
    assert empty.total == 0 and empty.share("Q1") == 0.0
    with pytest.raises(ServiceError, match="naive datetime"):
        await tracks.mood_mix(since=datetime(2024, 1, 1))


def test_shared_m3u8_hides_the_folders_above_the_library() -> None:
    def pick(title: str, provider: str, location: str) -> Pick:
        return Pick(StoredMood(1, title, "A", 61.4, "Q1", 0.8, 0.8, 0.9, None, provider,
                               location), "why")

    text = shared_m3u8([pick("One", "local", "/home/me/Music/Rock/A/One.mp3"),
                        pick("Two", "local", "/home/me/Music/Jazz/Two.flac"),
                        pick("Three", "deezer", "https://www.deezer.com/track/3")])
    assert text.splitlines() == [
        "#EXTM3U", "#EXTINF:61,A - One", "Rock/A/One.mp3", "#EXTINF:61,A - Two",
        "Jazz/Two.flac", "#EXTINF:61,A - Three", "https://www.deezer.com/track/3"]
    single = shared_m3u8([pick("One", "local", "/home/me/Music/Rock/A/One.mp3")])
    assert single.splitlines()[-1] == "One.mp3"
