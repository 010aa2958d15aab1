"""The providers one by one, against fake services on 127.0.0.1: Spotify (through spotipy),
Deezer, iTunes, yt-dlp (generic extractor on a loopback file) and local files."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import soundfile as sf
from pydantic import SecretStr

from bot.sources.base import Wanted
from bot.sources.deezer import DeezerSource
from bot.sources.errors import (
    DownloadTooLargeError,
    NotAudioError,
    RateLimitedError,
    SourceError,
    SourceUnavailableError,
    TrackNotFoundError,
    UnsafeURLError,
)
from bot.sources.http import HttpClient
from bot.sources.itunes import ItunesSource
from bot.sources.links import parse_deezer_track_id, parse_spotify_track_id
from bot.sources.local import LocalSource
from bot.sources.matching import normalize, pick_best
from bot.sources.models import TrackInfo
from bot.sources.spotify import SpotifySource
from bot.sources.ytdlp import YtDlpSource, track_info_from_ytdlp
from tests.fakes.audio import tone_mp3
from tests.fakes.guards import LoopbackGuard, install_loopback_guard
from tests.fakes.servers import CATALOGUE, FakeDeezer, FakeFiles, FakeItunes, FakeSpotify

SUNNY, HUM = CATALOGUE


@pytest.fixture(autouse=True)
def guard(monkeypatch: pytest.MonkeyPatch) -> LoopbackGuard:
    return install_loopback_guard(monkeypatch)


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    async with HttpClient(allow_private=True, timeout_s=2.0, retries=2,
                          backoff_base_s=0.01) as client:
        yield client


# --- Spotify --------------------------------------------------------------------------------


@pytest.fixture
async def spotify_fake() -> AsyncIterator[FakeSpotify]:
    async with FakeSpotify() as server:
        yield server


def _spotify(fake: FakeSpotify, *, secret: str = FakeSpotify.CLIENT_SECRET,
             retries: int = 1) -> SpotifySource:
    return SpotifySource(FakeSpotify.CLIENT_ID, SecretStr(secret), api_base=fake.api_base,
                         token_url=fake.token_url, timeout_s=2.0, retries=retries,
                         backoff_base_s=0.01)


async def test_spotify_search_and_track(spotify_fake: FakeSpotify) -> None:
    spotify = _spotify(spotify_fake)
    try:
        found = await spotify.search("Oscillators Sunny Sine")
        assert found == TrackInfo(
            title="Sunny Sine", artist="The Oscillators", album="Waveforms", duration_s=201.0,
            isrc=SUNNY.isrc, provider="spotify", provider_id=SUNNY.spotify_id,
            url=f"https://open.spotify.com/track/{SUNNY.spotify_id}", preview_url=None)
        assert await spotify.search("no such song anywhere") is None
        by_url = await spotify.track(f"https://open.spotify.com/intl-de/track/{HUM.spotify_id}"
                                     "?si=abc")
        by_uri = await spotify.track(f"spotify:track:{HUM.spotify_id}")
        assert by_url == by_uri
        assert by_url.title == "Low Hum"
        assert spotify_fake.hits["/api/token"] == 1  # the token is reused
    finally:
        spotify.close()


async def test_spotify_unknown_track_is_not_found(spotify_fake: FakeSpotify) -> None:
    spotify = _spotify(spotify_fake)
    with pytest.raises(TrackNotFoundError, match="404"):
        await spotify.track("0" * 22)
    with pytest.raises(TrackNotFoundError, match="not a Spotify track id"):
        await spotify.track("https://example.com/nope")
    spotify.close()


async def test_audio_features_403_is_asked_only_once(spotify_fake: FakeSpotify) -> None:
    first, second = _spotify(spotify_fake), _spotify(spotify_fake)
    try:
        assert await first.audio_features(SUNNY.spotify_id) is None
        assert await first.audio_features(HUM.spotify_id) is None
        assert await second.audio_features(SUNNY.spotify_id) is None  # same app, same process
        assert first.features_denied and second.features_denied
    finally:
        first.close()
        second.close()
    assert spotify_fake.hits_under("/v1/audio-features") == 1


async def test_audio_features_where_still_allowed(spotify_fake: FakeSpotify) -> None:
    spotify_fake.features_status = 200
    spotify = _spotify(spotify_fake)
    features = await spotify.audio_features(SUNNY.spotify_id)
    spotify.close()
    assert features == {"danceability": 0.7, "energy": 0.8, "valence": 0.9, "tempo": 120.0,
                        "mode": 1}


async def test_spotify_bad_secret_fails_authentication(spotify_fake: FakeSpotify) -> None:
    spotify = _spotify(spotify_fake, secret="wrong")
    with pytest.raises(SourceError, match="authentication failed") as info:
        await spotify.search("anything")
    spotify.close()
    assert not isinstance(info.value, SourceUnavailableError | RateLimitedError)
    assert "wrong" not in str(info.value)


async def test_spotify_429_then_success(spotify_fake: FakeSpotify) -> None:
    spotify_fake.fail("/v1/tracks", 429, headers={"Retry-After": "0"})
    spotify = _spotify(spotify_fake)
    assert (await spotify.track(SUNNY.spotify_id)).title == "Sunny Sine"
    spotify.close()
    assert spotify_fake.hits_under("/v1/tracks") == 2


async def test_spotify_redirects_are_not_followed(spotify_fake: FakeSpotify,
                                                 guard: LoopbackGuard) -> None:
    spotify_fake.fail("/v1/tracks", 302, headers={"Location": "http://127.0.0.2:9/private"})
    spotify = _spotify(spotify_fake)
    with pytest.raises(SourceError, match="redirect"):
        await spotify.track(SUNNY.spotify_id)
    spotify.close()
    assert spotify_fake.hits_under("/v1/tracks") == 1
    assert "127.0.0.2" not in guard.attempts


async def test_spotify_retry_after_beyond_the_cap_is_not_slept(
        spotify_fake: FakeSpotify) -> None:
    # spotipy's own urllib3 retries would sleep the whole hour here.
    spotify_fake.fail("/v1/search", 429, times=None, headers={"Retry-After": "3600"})
    spotify = _spotify(spotify_fake, retries=3)
    with pytest.raises(RateLimitedError) as info:
        await spotify.search("x")
    spotify.close()
    assert info.value.retry_after == 3600
    assert spotify_fake.hits_under("/v1/search") == 1


async def test_spotify_persistent_500_is_unavailable(spotify_fake: FakeSpotify) -> None:
    spotify_fake.fail("/v1/search", 500, times=None)
    spotify = _spotify(spotify_fake, retries=1)
    with pytest.raises(SourceUnavailableError, match="HTTP 500"):
        await spotify.search("x")
    spotify.close()
    assert spotify_fake.hits_under("/v1/search") == 2


async def test_spotify_logs_hold_no_secrets(spotify_fake: FakeSpotify,
                                            caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    spotify = _spotify(spotify_fake)
    await spotify.search("Sunny Sine")
    spotify.close()
    basic = base64.b64encode(
        f"{FakeSpotify.CLIENT_ID}:{FakeSpotify.CLIENT_SECRET}".encode()).decode()
    assert "Authorization" in caplog.text  # spotipy did log its headers...
    assert basic not in caplog.text  # ...without the secret
    assert FakeSpotify.TOKEN not in caplog.text
    assert list(tmp_path.iterdir()) == []  # no token file (spotipy's default ./.cache)


@pytest.mark.parametrize(("text", "expected"), [
    (f"https://open.spotify.com/track/{SUNNY.spotify_id}", SUNNY.spotify_id),
    (f"https://open.spotify.com/track/{SUNNY.spotify_id}?si=1a2b", SUNNY.spotify_id),
    (f"open.spotify.com/intl-fr/track/{SUNNY.spotify_id}", SUNNY.spotify_id),
    (f"spotify:track:{SUNNY.spotify_id}", SUNNY.spotify_id),
    (f"https://open.spotify.com/album/{SUNNY.spotify_id}", None),
    (f"https://evil.test/open.spotify.com/track/{SUNNY.spotify_id}", None),
    ("spotify:track:short", None), ("Sunny Sine", None),
])
def test_parse_spotify_track_id(text: str, expected: str | None) -> None:
    assert parse_spotify_track_id(text) == expected


# --- Deezer ---------------------------------------------------------------------------------


@pytest.fixture
async def deezer_fake() -> AsyncIterator[FakeDeezer]:
    async with FakeDeezer() as server:
        yield server


async def test_deezer_search_track_isrc_and_preview(deezer_fake: FakeDeezer,
                                                    http: HttpClient) -> None:
    deezer = DeezerSource(http, api_base=deezer_fake.base)
    [found] = await deezer.search('artist:"The Oscillators" track:"Sunny Sine"')
    assert (found.title, found.artist, found.album, found.isrc, found.duration_s) == \
        ("Sunny Sine", "The Oscillators", "Waveforms", SUNNY.isrc, 201.0)
    assert await deezer.track(SUNNY.deezer_id) == found
    assert await deezer.track(f"https://www.deezer.com/fr/track/{SUNNY.deezer_id}") == found
    assert await deezer.track_by_isrc(SUNNY.isrc) == found
    assert await deezer.download_preview(found) == deezer_fake.audio


async def test_deezer_errors_inside_http_200(deezer_fake: FakeDeezer, http: HttpClient) -> None:
    deezer = DeezerSource(http, api_base=deezer_fake.base, quota_wait_s=0.05)
    with pytest.raises(TrackNotFoundError, match="no data"):
        await deezer.track(999)
    deezer_fake.quota_errors = 1  # retried like a 429
    assert (await deezer.track(SUNNY.deezer_id)).title == "Sunny Sine"
    deezer_fake.quota_errors = 10
    with pytest.raises(RateLimitedError, match="quota"):
        await deezer.track(SUNNY.deezer_id)


async def test_deezer_fetch_prefers_isrc_then_search(deezer_fake: FakeDeezer,
                                                     http: HttpClient) -> None:
    deezer = DeezerSource(http, api_base=deezer_fake.base)
    known = TrackInfo(title="Sunny Sine", artist="The Oscillators", isrc=SUNNY.isrc,
                      provider="spotify", provider_id=SUNNY.spotify_id)
    fetched = await deezer.fetch(Wanted(track=known))
    assert fetched.data == deezer_fake.audio
    assert deezer_fake.hits[f"/track/isrc:{SUNNY.isrc}"] == 1
    assert deezer_fake.hits["/search"] == 0
    free = await deezer.fetch(Wanted(text="low hum"))
    assert free.track.title == "Low Hum"
    deezer_fake.no_preview.add(HUM.deezer_id)
    with pytest.raises(TrackNotFoundError, match="no preview"):
        await deezer.fetch(Wanted(text="low hum"))


@pytest.mark.parametrize(("text", "expected"), [
    ("https://www.deezer.com/track/3135556", "3135556"),
    ("https://www.deezer.com/en/track/3135556?utm=x", "3135556"),
    ("deezer.com/pt-br/track/42", "42"), ("https://www.deezer.com/album/302127", None),
    ("https://deezer.com.evil.test/track/1", None),
])
def test_parse_deezer_track_id(text: str, expected: str | None) -> None:
    assert parse_deezer_track_id(text) == expected


# --- iTunes ---------------------------------------------------------------------------------


async def test_itunes_search_and_fetch(http: HttpClient) -> None:
    async with FakeItunes() as fake:
        itunes = ItunesSource(http, api_base=fake.base)
        [found] = await itunes.search("square waves low hum")
        assert (found.title, found.artist, found.album, found.duration_s, found.isrc) == \
            ("Low Hum", "Square Waves", "Harmonics", 187.0, None)
        known = TrackInfo(title="Low Hum (2011 Remaster)", artist="Square Waves",
                          provider="spotify", provider_id=HUM.spotify_id)
        fetched = await itunes.fetch(Wanted(track=known))
        assert fetched.data == fake.audio
        wrong = TrackInfo(title="Low Hum", artist="Somebody Else", provider="spotify",
                          provider_id="x")
        with pytest.raises(TrackNotFoundError):
            await itunes.fetch(Wanted(track=wrong))


def test_matching_ignores_decorations() -> None:
    assert normalize("Café del Mar (feat. Someone) - 2011 Remastered") == "cafe del mar"
    candidates = [
        TrackInfo(title="Sunny Sine (Live)", artist="Cover Band", provider="x", provider_id="1"),
        TrackInfo(title="Sunny Sine - Remastered", artist="The Oscillators", provider="x",
                  provider_id="2"),
    ]
    assert pick_best(candidates, artist="Oscillators", title="Sunny Sine") is candidates[1]
    assert pick_best(candidates, artist="Nobody", title="Other") is None
    assert pick_best(candidates, artist=None, title=None) is candidates[0]


# --- yt-dlp ---------------------------------------------------------------------------------


@pytest.fixture
async def files() -> AsyncIterator[FakeFiles]:
    async with FakeFiles() as server:
        yield server


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="yt-dlp needs ffmpeg for sections")
async def test_ytdlp_generic_extractor_takes_the_first_30_seconds(
        files: FakeFiles, tmp_path: Path) -> None:
    ytdlp = YtDlpSource(allow_private=True, timeout_s=5.0, max_bytes=10**6)
    fetched = await ytdlp.fetch(Wanted(url=f"{files.base}/long.mp3"))
    assert fetched.ext == "mp3"
    assert fetched.track.provider == "ytdlp" and fetched.track.title == "long"
    clip = tmp_path / "clip.mp3"
    clip.write_bytes(fetched.data)
    assert 29.0 <= sf.info(str(clip)).duration <= 31.0  # the source is 40 s long


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="yt-dlp needs ffmpeg for sections")
async def test_ytdlp_download_over_the_cap(files: FakeFiles) -> None:
    ytdlp = YtDlpSource(allow_private=True, timeout_s=5.0, max_bytes=10_000)
    with pytest.raises(DownloadTooLargeError, match="10000"):
        await ytdlp.fetch(Wanted(url=f"{files.base}/long.mp3"))


async def test_ytdlp_refuses_private_urls_itself(files: FakeFiles, guard: LoopbackGuard) -> None:
    ytdlp = YtDlpSource(allow_private=False)
    with pytest.raises(UnsafeURLError):
        await ytdlp.fetch(Wanted(url=f"{files.base}/long.mp3"))
    assert guard.attempts == []
    assert sum(files.hits.values()) == 0


async def test_ytdlp_failures_are_source_errors(files: FakeFiles) -> None:
    ytdlp = YtDlpSource(allow_private=True, timeout_s=2.0)
    with pytest.raises(SourceError):
        await ytdlp.fetch(Wanted(url=f"{files.base}/missing.mp3"))
    with pytest.raises(TrackNotFoundError, match="nothing to search"):
        await ytdlp.fetch(Wanted())


def test_ytdlp_options_forbid_playlists_and_cap_the_download(tmp_path: Path) -> None:
    opts = YtDlpSource(max_bytes=1234, timeout_s=3.0, ffmpeg="/usr/bin/ffmpeg").options(
        tmp_path, "http://127.0.0.1:9")
    assert opts["noplaylist"] is True and opts["playlist_items"] == "1"
    assert opts["max_filesize"] == 1234 and opts["socket_timeout"] == 3.0
    assert opts["proxy"] == opts["geo_verification_proxy"] == "http://127.0.0.1:9"
    assert opts["quiet"] and opts["noprogress"]
    assert "file" not in opts["external_downloader_args"]["ffmpeg_i"][1].split(",")
    assert opts["paths"]["home"] == str(tmp_path)
    json.dumps(opts)  # it travels to the child process as JSON


@pytest.mark.parametrize(("info", "artist", "title"), [
    ({"id": "a", "title": "Square Waves - Low Hum (Official Video)", "uploader": "SW"},
     "Square Waves", "Low Hum (Official Video)"),
    ({"id": "b", "title": "Low Hum", "uploader": "Square Waves - Topic"}, "Square Waves",
     "Low Hum"),
    ({"id": "c", "title": "x", "track": "Low Hum", "artist": "Square Waves"}, "Square Waves",
     "Low Hum"),
])
def test_ytdlp_metadata(info: dict[str, str], artist: str, title: str) -> None:
    track = track_info_from_ytdlp(info)
    assert (track.artist, track.title, track.provider) == (artist, title, "ytdlp")


# --- local files ----------------------------------------------------------------------------


async def test_local_file_is_its_own_preview(tmp_path: Path) -> None:
    path = tmp_path / "Square Waves - Low Hum.mp3"
    data = tone_mp3(2.0)
    path.write_bytes(data)
    preview = await LocalSource().preview(path)
    assert preview.path == path.resolve()
    assert preview.provider == "local"
    assert preview.sha256 == hashlib.sha256(data).hexdigest()
    assert (preview.track.artist, preview.track.title) == ("Square Waves", "Low Hum")
    assert preview.track.duration_s == pytest.approx(2.0, abs=0.1)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # nothing copied


async def test_local_without_artist_in_the_name(tmp_path: Path) -> None:
    path = tmp_path / "hum.mp3"
    path.write_bytes(tone_mp3(1.0))
    assert LocalSource().info(path).title == "hum"
    assert LocalSource().info(path).artist == ""


async def test_local_refuses_missing_and_non_audio_files(tmp_path: Path) -> None:
    with pytest.raises(TrackNotFoundError, match="no such file"):
        await LocalSource().preview(tmp_path / "nope.mp3")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(NotAudioError):
        await LocalSource().preview(notes)


async def test_local_names_what_is_there_instead_of_audio(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)
    with pytest.raises(TrackNotFoundError, match="not a regular file") as caught:
        await LocalSource().preview(fifo)
    assert "no such file" not in str(caught.value)
    with pytest.raises(TrackNotFoundError, match="a directory"):
        await LocalSource().preview(tmp_path)
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(NotAudioError, match="empty"):
        await LocalSource().preview(empty)
