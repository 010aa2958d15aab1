"""bot.sources.resolver: query classification, metadata choice, source order and fall-through.

Spotify, Deezer, iTunes and a file host are fakes on 127.0.0.1; yt-dlp is replaced by a stub
where a test does not exercise it (a real yt-dlp search would go to YouTube).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.settings import Settings, SourceSettings
from bot.sources.base import Fetched, Wanted
from bot.sources.errors import (
    NoPreviewError,
    SourceUnavailableError,
    TrackNotFoundError,
    UnsafeURLError,
)
from bot.sources.models import Preview, TrackInfo
from bot.sources.resolver import (
    PreviewResolver,
    Query,
    QueryKind,
    ResolverConfig,
    classify_query,
)
from tests.fakes.audio import tone_mp3
from tests.fakes.guards import LoopbackGuard, install_loopback_guard
from tests.fakes.servers import CATALOGUE, FakeDeezer, FakeFiles, FakeItunes, FakeSpotify

SUNNY, HUM = CATALOGUE


@pytest.fixture(autouse=True)
def guard(monkeypatch: pytest.MonkeyPatch) -> LoopbackGuard:
    return install_loopback_guard(monkeypatch)


class StubYtDlp:
    """Stands in for yt-dlp: records what it was asked, serves a 1 s tone or fails."""

    name = "ytdlp"

    def __init__(self) -> None:
        self.calls: list[Wanted] = []
        self.fail_with: Exception | None = None
        self.audio = tone_mp3(1.0, 550.0)

    async def fetch(self, wanted: Wanted) -> Fetched:
        self.calls.append(wanted)
        if self.fail_with is not None:
            raise self.fail_with
        track = TrackInfo(title="from youtube", artist="someone", provider="ytdlp",
                          provider_id="yt1")
        return Fetched(track, self.audio, "mp3")


@dataclass
class World:
    spotify: FakeSpotify
    deezer: FakeDeezer
    itunes: FakeItunes
    files: FakeFiles
    cache_dir: Path
    ytdlp: StubYtDlp

    def config(self, *, spotify: bool = False, **changes: object) -> ResolverConfig:
        base: dict[str, object] = dict(
            audio_cache_dir=self.cache_dir, deezer_api_base=self.deezer.base,
            itunes_api_base=self.itunes.base, allow_private_urls=True, http_timeout_s=2.0,
            http_retries=1, backoff_base_s=0.01, deezer_quota_wait_s=0.01)
        if spotify:
            base.update(spotify_client_id=FakeSpotify.CLIENT_ID,
                        spotify_client_secret=SecretStr(FakeSpotify.CLIENT_SECRET),
                        spotify_api_base=self.spotify.api_base,
                        spotify_token_url=self.spotify.token_url)
        base.update(changes)
        cache = base.pop("audio_cache_dir")
        local = bool(base.pop("allow_local_files", False))
        return ResolverConfig(SourceSettings(_env_file=None, **base),  # type: ignore[arg-type]
                              cache, local)

    async def resolve(self, query: str, *, stub_ytdlp: bool = True, spotify: bool = False,
                      **changes: object) -> Preview:
        sources = {"ytdlp": self.ytdlp} if stub_ytdlp else None
        config = self.config(spotify=spotify, **changes)
        async with PreviewResolver(config, sources=sources) as resolver:
            return await resolver.resolve(query)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with FakeSpotify() as spotify, FakeDeezer() as deezer, FakeItunes() as itunes, \
            FakeFiles() as files:
        yield World(spotify, deezer, itunes, files, tmp_path / "cache", StubYtDlp())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- classification -------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "expected"), [
    (f"https://open.spotify.com/track/{SUNNY.spotify_id}?si=x",
     Query(QueryKind.SPOTIFY, SUNNY.spotify_id)),
    (f"spotify:track:{HUM.spotify_id}", Query(QueryKind.SPOTIFY, HUM.spotify_id)),
    ("https://www.deezer.com/fr/track/3135556", Query(QueryKind.DEEZER, "3135556")),
    ("https://www.youtube.com/watch?v=dQw4w9WgXcQ",
     Query(QueryKind.URL, "https://www.youtube.com/watch?v=dQw4w9WgXcQ")),
    ("youtu.be/dQw4w9WgXcQ", Query(QueryKind.URL, "https://youtu.be/dQw4w9WgXcQ")),
    ("http://files.test/a.mp3", Query(QueryKind.URL, "http://files.test/a.mp3")),
    ("The Oscillators - Sunny Sine",
     Query(QueryKind.TEXT, "The Oscillators - Sunny Sine", "The Oscillators", "Sunny Sine")),
    ("Square Waves – Low Hum", Query(QueryKind.TEXT, "Square Waves – Low Hum",
                                     "Square Waves", "Low Hum")),
    ("sunny sine oscillators", Query(QueryKind.TEXT, "sunny sine oscillators")),
    ("AC-DC", Query(QueryKind.TEXT, "AC-DC")),
    ("/etc/passwd", Query(QueryKind.TEXT, "/etc/passwd")),  # local files not allowed
])
def test_classify_query(query: str, expected: Query) -> None:
    assert classify_query(query) == expected


@pytest.mark.parametrize("query", ["ftp://x.test/a.mp3", "file:///etc/passwd",
                                   "gopher://x.test/"])
def test_other_schemes_are_refused(query: str) -> None:
    with pytest.raises(UnsafeURLError):
        classify_query(query)


def test_local_paths_only_when_allowed(tmp_path: Path) -> None:
    song = tmp_path / "Square Waves - Low Hum.mp3"
    song.write_bytes(tone_mp3(1.0))
    assert classify_query(str(song), allow_local_files=True).kind is QueryKind.LOCAL
    assert classify_query(song.as_uri(), allow_local_files=True) == \
        Query(QueryKind.LOCAL, str(song))
    assert classify_query(str(song)).kind is QueryKind.TEXT
    with pytest.raises(ValueError, match="empty"):
        classify_query("   ")


# --- metadata and the source order ----------------------------------------------------------


async def test_text_without_spotify_uses_deezer_for_everything(world: World) -> None:
    preview = await world.resolve("The Oscillators - Sunny Sine")
    assert preview.provider == "deezer"
    assert preview.track.provider == "deezer" and preview.track.isrc == SUNNY.isrc
    assert preview.sha256 == sha(world.deezer.audio)
    assert preview.path.read_bytes() == world.deezer.audio
    assert preview.path.is_relative_to(world.cache_dir)
    assert world.deezer.hits["/search"] == 1  # the metadata search already had the preview
    assert world.itunes.hits_under("/") == 0 and world.ytdlp.calls == []


async def test_spotify_link_metadata_then_deezer_by_isrc(world: World) -> None:
    preview = await world.resolve(f"https://open.spotify.com/track/{SUNNY.spotify_id}",
                                  spotify=True)
    assert preview.track.provider == "spotify"
    assert preview.track.provider_id == SUNNY.spotify_id
    assert preview.track.spotify_features is None  # 403 for new apps
    assert preview.provider == "deezer"
    assert world.deezer.hits[f"/track/isrc:{SUNNY.isrc}"] == 1
    assert world.deezer.hits["/search"] == 0


async def test_spotify_features_are_kept_where_allowed(world: World) -> None:
    world.spotify.features_status = 200
    preview = await world.resolve("square waves low hum", spotify=True)
    assert preview.track.provider == "spotify" and preview.track.title == "Low Hum"
    assert preview.track.spotify_features is not None
    assert preview.track.spotify_features["valence"] == 0.9


async def test_spotify_search_down_falls_back_to_deezer_metadata(world: World) -> None:
    world.spotify.fail("/v1/search", 503, times=None)
    preview = await world.resolve("The Oscillators - Sunny Sine", spotify=True)
    assert preview.track.provider == "deezer" and preview.provider == "deezer"


async def test_a_spotify_link_needs_credentials(world: World) -> None:
    with pytest.raises(TrackNotFoundError, match="MER_SPOTIFY_CLIENT_ID"):
        await world.resolve(f"spotify:track:{SUNNY.spotify_id}")


async def test_deezer_link(world: World) -> None:
    preview = await world.resolve(f"https://www.deezer.com/track/{HUM.deezer_id}")
    assert (preview.track.title, preview.provider) == ("Low Hum", "deezer")
    assert world.deezer.hits[f"/track/{HUM.deezer_id}"] == 1


async def test_deezer_500_falls_through_to_itunes(world: World) -> None:
    world.deezer.fail("/", 500, times=None)
    preview = await world.resolve(f"https://open.spotify.com/track/{HUM.spotify_id}",
                                  spotify=True)
    assert preview.provider == "itunes"
    assert preview.sha256 == sha(world.itunes.audio)
    assert preview.track.provider == "spotify"  # the best metadata is kept
    assert world.deezer.hits_under("/track/isrc:") == 2  # one retry, then the next source


async def test_the_configured_order_is_followed(world: World) -> None:
    preview = await world.resolve("The Oscillators - Sunny Sine",
                                  source_order=("itunes", "deezer", "ytdlp"))
    assert preview.provider == "itunes"
    preview = await world.resolve("The Oscillators - Sunny Sine",
                                  source_order=("ytdlp", "deezer"))
    assert preview.provider == "ytdlp"
    assert world.ytdlp.calls[0].track is not None
    assert world.ytdlp.calls[0].search_text == "The Oscillators Sunny Sine"


async def test_unknown_text_goes_to_ytdlp_as_search_text(world: World) -> None:
    preview = await world.resolve("a song nobody has")
    assert preview.provider == "ytdlp"
    assert preview.track.provider == "ytdlp"
    assert [w.text for w in world.ytdlp.calls] == ["a song nobody has"]


async def test_when_every_source_fails_each_reason_is_listed(world: World) -> None:
    world.deezer.no_preview.add(SUNNY.deezer_id)
    world.itunes.fail("/search", 500, times=None)
    world.ytdlp.fail_with = SourceUnavailableError("ytdlp", "youtube is down")
    with pytest.raises(NoPreviewError) as info:
        await world.resolve("The Oscillators - Sunny Sine")
    assert list(info.value.reasons) == ["deezer", "itunes", "ytdlp"]
    message = str(info.value)
    assert "no preview" in info.value.reasons["deezer"]
    assert "HTTP 500" in message and "youtube is down" in message
    assert isinstance(info.value, TrackNotFoundError)


# --- URLs -----------------------------------------------------------------------------------


async def test_a_direct_audio_url_is_fetched_by_the_http_client(world: World) -> None:
    preview = await world.resolve(f"{world.files.base}/audio.mp3?sig=SECRET")
    assert preview.provider == "url"
    assert preview.sha256 == sha(world.files.audio)
    assert preview.track.title == "audio"
    assert "SECRET" not in (preview.track.url or "") + preview.track.provider_id
    assert preview.track.provider_id.startswith(f"{world.files.base}/audio.mp3?sig=sha256-")
    assert world.ytdlp.calls == []


async def test_a_server_that_is_down_or_too_slow_is_not_asked_again_by_ytdlp(
        world: World) -> None:
    world.files.slow_s = 2.0
    with pytest.raises(NoPreviewError) as info:
        await world.resolve(f"{world.files.base}/slow", http_timeout_s=0.3, http_retries=0)
    assert list(info.value.reasons) == ["http"]
    assert world.ytdlp.calls == []


async def test_a_web_page_url_goes_to_ytdlp(world: World) -> None:
    preview = await world.resolve(f"{world.files.base}/html")
    assert preview.provider == "ytdlp"
    assert [w.url for w in world.ytdlp.calls] == [f"{world.files.base}/html"]


async def test_real_ytdlp_on_a_page_without_media(world: World) -> None:
    with pytest.raises(NoPreviewError) as info:
        await world.resolve(f"{world.files.base}/html", stub_ytdlp=False)
    assert set(info.value.reasons) == {"http", "ytdlp"}


async def test_private_urls_are_refused_before_any_connection(
        world: World, guard: LoopbackGuard) -> None:
    for url in (f"{world.files.base}/audio.mp3", "http://10.0.0.1/a.mp3",
                "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(UnsafeURLError):
            await world.resolve(url, allow_private_urls=False)
    assert guard.attempts == [] and world.ytdlp.calls == []


# --- local files, cache, configuration ------------------------------------------------------


async def test_local_files_when_allowed(world: World, tmp_path: Path) -> None:
    song = tmp_path / "Square Waves - Low Hum.mp3"
    song.write_bytes(tone_mp3(1.0))
    preview = await world.resolve(str(song), allow_local_files=True)
    assert preview.provider == "local" and preview.path == song.resolve()
    assert not world.cache_dir.exists()  # not copied into the cache


async def test_the_same_preview_is_cached_once(world: World) -> None:
    first = await world.resolve("The Oscillators - Sunny Sine")
    second = await world.resolve(f"https://www.deezer.com/track/{SUNNY.deezer_id}")
    assert first.path == second.path
    assert len([p for p in world.cache_dir.rglob("*") if p.is_file()]) == 1


async def test_a_search_result_preview_is_downloaded_without_a_second_lookup(
        world: World) -> None:
    async with PreviewResolver(world.config()) as resolver:
        (found,) = await resolver.itunes.search("square waves low hum")
        preview = await resolver.preview_of(found)
        assert (preview.provider, preview.track) == ("itunes", found)
        assert preview.path.read_bytes() == world.itunes.audio
        assert preview.path.is_relative_to(world.cache_dir)
        assert world.itunes.hits["/search"] == 1 and world.itunes.hits_under("/preview/") == 1
        with pytest.raises(TrackNotFoundError, match="no preview for Square Waves - Low Hum"):
            await resolver.preview_of(dataclasses.replace(found, preview_url=None))
        world.itunes.fail("/preview/", 503, times=None)
        with pytest.raises(SourceUnavailableError, match=r"^itunes: HTTP 503"):
            await resolver.preview_of(found)
    assert world.deezer.hits_under("/") == 0


def test_config_from_settings(tmp_path: Path) -> None:
    settings = Settings.load(None, data_dir=tmp_path, sources={
        "spotify_client_id": "id", "spotify_client_secret": "s3cret",
        "source_order": ["itunes", "deezer"], "max_download_mb": 2})
    config = ResolverConfig.from_settings(settings)
    assert config.audio_cache_dir == tmp_path / "audio-cache"
    assert config.sources.source_order == ["itunes", "deezer"]
    assert config.sources.max_download_bytes == 2_000_000
    assert config.sources.spotify_configured and not config.allow_local_files
    assert "s3cret" not in repr(config)


def test_settings_read_source_order_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MER_SOURCE_ORDER", "ytdlp, Deezer")
    monkeypatch.setenv("MER_AUDIO_CACHE_DIR", "")
    monkeypatch.setenv("MER_ALLOWED_NETWORKS", "192.168.1.0/24,10.0.0.7")
    settings = Settings.load(None)
    assert settings.sources.source_order == ["ytdlp", "deezer"]
    assert settings.sources.audio_cache_dir is None
    assert settings.sources.allowed_networks == ["192.168.1.0/24", "10.0.0.7"]
    monkeypatch.setenv("MER_SOURCE_ORDER", "deezer,deezer")
    with pytest.raises(ValueError, match="at most once"):
        Settings.load(None)
    monkeypatch.setenv("MER_SOURCE_ORDER", "napster")
    with pytest.raises(ValueError, match="MER_SOURCE_ORDER"):
        Settings.load(None)
