"""From what a user typed to a preview file: metadata first, then preview sources in order.

A query is a local file, a Spotify or Deezer track link, another http(s) URL (YouTube or a
direct audio file), or search text (``"Artist - Title"`` or anything). Metadata comes from
Spotify when it is configured (and from Deezer otherwise); the audio then comes from the
preview sources in the configured order (Deezer, iTunes, yt-dlp by default), each failure
logged and the next source tried. Downloads land in the content-addressed audio cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import unquote

import yarl

from bot.sources.audio_cache import AudioCache
from bot.sources.base import Fetched, PreviewSource, Wanted
from bot.sources.errors import (
    NoPreviewError,
    RateLimitedError,
    SourceError,
    SourceUnavailableError,
    TrackNotFoundError,
    UnsafeURLError,
)
from bot.sources.links import parse_deezer_track_id, parse_spotify_track_id
from bot.sources.local import AUDIO_EXTENSIONS, LocalSource
from bot.sources.matching import pick_best
from bot.sources.models import Preview, TrackInfo
from bot.sources.urlguard import redact_url, url_identity
from bot.sources.ytdlp import YtDlpSource

if TYPE_CHECKING:
    from bot.settings import Settings, SourceSettings
    from bot.sources.deezer import DeezerSource
    from bot.sources.http import HttpClient
    from bot.sources.itunes import ItunesSource
    from bot.sources.spotify import SpotifySource

log = logging.getLogger(__name__)

SOURCE = "resolver"
_SCHEME_RE = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://")
_BARE_URL_RE = re.compile(r"^(?:www\.|m\.|music\.)?(?:youtube\.com|youtu\.be|soundcloud\.com|"
                          r"open\.spotify\.com|(?:www\.)?deezer\.com)/", re.IGNORECASE)
_YOUTUBE_HOSTS = frozenset({"youtube.com", "www.youtube.com", "m.youtube.com",
                            "music.youtube.com", "youtu.be", "www.youtu.be"})
_ARTIST_TITLE_RE = re.compile(r"\s+[-–—]\s+")


class QueryKind(StrEnum):
    """What a query is."""

    LOCAL = "local"
    SPOTIFY = "spotify"
    DEEZER = "deezer"
    URL = "url"
    TEXT = "text"


@dataclass(frozen=True)
class Query:
    """A classified query.

    Attributes
    ----------
    kind : QueryKind
        What it is.
    value : str
        The file path, the Spotify or Deezer track id, the URL, or the search text.
    artist, title : str or None
        For text ``"Artist - Title"``, its two halves.
    """

    kind: QueryKind
    value: str
    artist: str | None = None
    title: str | None = None


def classify_query(query: str, *, allow_local_files: bool = False) -> Query:
    """Tell what a query is.

    Parameters
    ----------
    query : str
        What the user typed or passed.
    allow_local_files : bool
        Whether paths on this machine may be read (the CLI: yes; a public bot: no, or users
        could read the server's files).

    Returns
    -------
    Query

    Raises
    ------
    ValueError
        The query is empty.
    UnsafeURLError
        A URL with a scheme other than http(s) (``file://`` only with local files allowed).
    """
    text = query.strip()
    if not text:
        raise ValueError("empty query")
    if (spotify_id := parse_spotify_track_id(text)) is not None:
        return Query(QueryKind.SPOTIFY, spotify_id)
    if (deezer_id := parse_deezer_track_id(text)) is not None:
        return Query(QueryKind.DEEZER, deezer_id)
    scheme = _SCHEME_RE.match(text)
    if scheme is not None:
        name = scheme.group("scheme").lower()
        if name in ("http", "https"):
            return Query(QueryKind.URL, text)
        if name == "file" and allow_local_files:
            return Query(QueryKind.LOCAL, unquote(yarl.URL(text).path))
        raise UnsafeURLError(SOURCE, f"only http and https links are followed, not {name}://")
    if _BARE_URL_RE.match(text):
        return Query(QueryKind.URL, "https://" + text)
    if allow_local_files:
        path = Path(text).expanduser()
        looks_like_path = ("/" in text or "\\" in text) and path.suffix.lower() in AUDIO_EXTENSIONS
        if path.is_file() or looks_like_path:
            return Query(QueryKind.LOCAL, str(path))
    parts = _ARTIST_TITLE_RE.split(text, maxsplit=1)
    if len(parts) == 2 and all(p.strip() for p in parts):
        return Query(QueryKind.TEXT, text, artist=parts[0].strip(), title=parts[1].strip())
    return Query(QueryKind.TEXT, text)


@dataclass(frozen=True)
class ResolverConfig:
    """Everything :class:`PreviewResolver` needs: the sources' settings, and two choices of the
    caller.

    Attributes
    ----------
    sources : SourceSettings
        Endpoints, credentials, limits, source order (defaults declared there, once).
    audio_cache_dir : Path
        Folder of the audio cache.
    allow_local_files : bool
        Accept paths on this machine as queries (the CLI and the player; never the bot).
    """

    sources: SourceSettings
    audio_cache_dir: Path
    allow_local_files: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, *, allow_local_files: bool = False) -> Self:
        """The configuration described by the application settings."""
        return cls(settings.sources, settings.audio_cache_dir, allow_local_files)


class PreviewResolver:
    """Turns a query into a :class:`Preview` (metadata plus a cached audio file).

    Use as ``async with PreviewResolver(config) as resolver:`` (or call :meth:`aclose`).

    The HTTP client and the catalogue sources (Deezer, iTunes, Spotify) are built on first
    use: a local file needs none of them, and their modules (aiohttp, spotipy) cost about
    0.4 s of a start.

    Parameters
    ----------
    config : ResolverConfig
        Endpoints, limits, source order, cache.
    sources : mapping of str to PreviewSource, optional
        Replacements for the built-in preview sources, by name (tests, extensions).
    """

    def __init__(self, config: ResolverConfig, *,
                 sources: Mapping[str, PreviewSource] | None = None) -> None:
        self.config = config
        settings = config.sources
        self.cache = AudioCache(config.audio_cache_dir,
                                max_bytes=int(settings.audio_cache_mb * 1_000_000))
        self.ytdlp = YtDlpSource(max_bytes=settings.max_download_bytes,
                                 timeout_s=settings.http_timeout_s,
                                 allow_private=settings.allow_private_urls,
                                 allowed_networks=settings.allowed_networks,
                                 section_s=settings.ytdlp_section_s,
                                 deadline_s=settings.ytdlp_deadline,
                                 max_processes=settings.ytdlp_max_processes)
        self.local = LocalSource()
        self._replacements = dict(sources or {})

    @functools.cached_property
    def http(self) -> HttpClient:
        """The guarded HTTP client of the catalogue sources and direct downloads."""
        from bot.sources.http import HttpClient  # lazy: aiohttp costs ~0.2 s of every start

        settings = self.config.sources
        return HttpClient(timeout_s=settings.http_timeout_s, retries=settings.http_retries,
                          max_retry_after_s=settings.max_retry_after_s,
                          allow_private=settings.allow_private_urls,
                          allowed_networks=settings.allowed_networks,
                          backoff_base_s=settings.backoff_base_s)

    @functools.cached_property
    def deezer(self) -> DeezerSource:
        """Deezer: metadata, search and previews."""
        from bot.sources.deezer import DeezerSource  # lazy: imports aiohttp (start-up time)

        settings = self.config.sources
        return DeezerSource(self.http, api_base=settings.deezer_api_base,
                            max_bytes=settings.max_download_bytes,
                            quota_wait_s=settings.deezer_quota_wait_s)

    @functools.cached_property
    def itunes(self) -> ItunesSource:
        """iTunes: search and previews."""
        from bot.sources.itunes import ItunesSource  # lazy: imports aiohttp (start-up time)

        settings = self.config.sources
        return ItunesSource(self.http, api_base=settings.itunes_api_base,
                            max_bytes=settings.max_download_bytes)

    @functools.cached_property
    def spotify(self) -> SpotifySource | None:
        """Spotify metadata, or None when no Spotify credentials are configured."""
        settings = self.config.sources
        if not settings.spotify_configured:
            return None
        assert settings.spotify_client_id and settings.spotify_client_secret
        from bot.sources.spotify import SpotifySource  # lazy: spotipy costs ~0.2 s of every start

        return SpotifySource(
            settings.spotify_client_id, settings.spotify_client_secret,
            api_base=settings.spotify_api_base, token_url=settings.spotify_token_url,
            timeout_s=settings.http_timeout_s, retries=settings.http_retries,
            max_retry_after_s=settings.max_retry_after_s,
            backoff_base_s=settings.backoff_base_s)

    @functools.cached_property
    def sources(self) -> dict[str, PreviewSource]:
        """The preview sources by name: the built-in ones, then the replacements given."""
        return {"deezer": self.deezer, "itunes": self.itunes, "ytdlp": self.ytdlp,
                **self._replacements}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP sessions (of the clients built so far)."""
        built = vars(self)  # where functools.cached_property keeps what it built
        if "http" in built:
            await self.http.close()
        if built.get("spotify") is not None:
            built["spotify"].close()

    async def resolve(self, query: str) -> Preview:
        """Find metadata and a preview file for a query.

        Parameters
        ----------
        query : str
            A local path (when allowed), a Spotify track URL/URI, a Deezer track URL, another
            http(s) URL, or search text (``"Artist - Title"`` or free text).

        Returns
        -------
        Preview
            ``provider`` says which source served the audio; ``track`` is the best metadata
            (Spotify's, with audio features where the app still has them, else Deezer's, else
            that of the serving source).

        Raises
        ------
        NoPreviewError
            Every preview source failed; its message and ``reasons`` list why, per source.
        TrackNotFoundError
            The linked track does not exist, or a Spotify link without Spotify credentials.
        UnsafeURLError
            A URL that must not be fetched.
        SourceError
            The metadata source of a link failed (rate limit, outage).
        ValueError
            An empty query.
        """
        parsed = classify_query(query, allow_local_files=self.config.allow_local_files)
        log.debug("resolving %s query %r", parsed.kind,
                  redact_url(parsed.value) if parsed.kind is QueryKind.URL else parsed.value)
        if parsed.kind is QueryKind.LOCAL:
            return await self.local.preview(parsed.value)
        if parsed.kind is QueryKind.URL:
            return await self._resolve_url(parsed.value)
        track: TrackInfo | None
        if parsed.kind is QueryKind.SPOTIFY:
            if self.spotify is None:
                raise TrackNotFoundError(SOURCE, "a Spotify link needs Spotify credentials "
                                                 "(MER_SPOTIFY_CLIENT_ID, "
                                                 "MER_SPOTIFY_CLIENT_SECRET)")
            track = await self._with_features(await self.spotify.track(parsed.value))
        elif parsed.kind is QueryKind.DEEZER:
            track = await self.deezer.track(parsed.value)
        else:
            track = await self._search_metadata(parsed)
        wanted = Wanted(track=track, text=None if track else parsed.value)
        return await self._fetch_in_order(wanted, self.config.sources.source_order)

    async def preview_of(self, track: TrackInfo) -> Preview:
        """Download the preview clip a search result carries (``preview_url``) into the cache.

        For tracks already found by a catalogue search (Deezer, iTunes): no second lookup,
        the clip comes from the source that listed it.

        Parameters
        ----------
        track : TrackInfo
            A search result with a ``preview_url``.

        Returns
        -------
        Preview
            Served by ``track.provider``.

        Raises
        ------
        TrackNotFoundError
            The track has no preview URL.
        SourceError
            The download failed (see :meth:`HttpClient.download`).
        """
        if not track.preview_url:
            raise TrackNotFoundError(track.provider, f"no preview for {track.display_name}")
        data = await self.http.download(track.preview_url,
                                        max_bytes=self.config.sources.max_download_bytes,
                                        source=track.provider)
        return await self._store(track, Fetched(track, data), track.provider)

    async def _with_features(self, track: TrackInfo) -> TrackInfo:
        if self.spotify is None or track.provider != "spotify" or not track.provider_id:
            return track
        try:
            features = await self.spotify.audio_features(track.provider_id)
        except SourceError as exc:
            log.info("spotify audio features unavailable: %s", exc)
            return track
        return dataclasses.replace(track, spotify_features=features) if features else track

    async def _search_metadata(self, query: Query) -> TrackInfo | None:
        """Spotify's (configured) or Deezer's idea of the searched track; None if neither."""
        searchers: list[tuple[str, Callable[[str], Awaitable[list[TrackInfo]]]]] = []
        if self.spotify is not None:
            searchers.append(("spotify", self.spotify.search_tracks))
        searchers.append(("deezer", self.deezer.search))
        for name, search in searchers:
            try:
                results = await search(query.value)
            except SourceError as exc:
                log.info("%s search failed for %r: %s", name, query.value, exc)
                continue
            best = pick_best(results, artist=query.artist, title=query.title)
            found = best or (results[0] if results else None)
            if found is not None:
                return await self._with_features(found)
            log.info("%s: nothing found for %r", name, query.value)
        return None

    async def _fetch_in_order(self, wanted: Wanted, order: Sequence[str]) -> Preview:
        reasons: dict[str, str] = {}
        for name in order:
            source = self.sources[name]
            try:
                fetched = await source.fetch(wanted)
            except SourceError as exc:
                log.info("preview source %s failed for %r: %s", name,
                         wanted.search_text or redact_url(wanted.url or ""), exc)
                reasons[name] = exc.reason
                continue
            return await self._store(wanted.track or fetched.track, fetched, name)
        what = wanted.track.display_name if wanted.track else \
            (wanted.search_text or redact_url(wanted.url or ""))
        raise NoPreviewError(SOURCE, f"no preview found for {what!r}", reasons=reasons)

    async def _store(self, track: TrackInfo, fetched: Fetched, provider: str) -> Preview:
        cached = await asyncio.to_thread(self.cache.put, fetched.data, ext=fetched.ext)
        log.info("preview of %r from %s (%d bytes)", track.display_name, provider,
                 len(fetched.data))
        return Preview(track=track, path=cached.path, provider=provider, sha256=cached.sha256)

    async def _resolve_url(self, url: str) -> Preview:
        """A direct audio file through the guarded HTTP client, anything else through yt-dlp."""
        parsed = await self.http.check_url(url, source=SOURCE)
        reasons: dict[str, str] = {}
        if (parsed.host or "").lower() not in _YOUTUBE_HOSTS:
            try:
                data = await self.http.download(
                    url, max_bytes=self.config.sources.max_download_bytes)
            except UnsafeURLError:
                raise  # a redirect into a private network: yt-dlp must not try either
            except (SourceUnavailableError, RateLimitedError) as exc:
                # The server is down, too slow or refusing us: yt-dlp would wait on it again.
                raise NoPreviewError(SOURCE, f"no audio at {redact_url(parsed)}",
                                     reasons={"http": exc.reason}) from exc
            except SourceError as exc:
                # A web page (yt-dlp may find its media), or too large (yt-dlp takes only the
                # first seconds, within the same cap).
                reasons["http"] = exc.reason
            else:
                name = Path(unquote(parsed.path)).stem or (parsed.host or "audio")
                artist, _, title = name.partition(" - ") if " - " in name else ("", "", name)
                # The query string is part of what the URL names; its secrets are not stored.
                track = TrackInfo(title=title.strip(), artist=artist.strip(), provider="url",
                                  provider_id=url_identity(parsed), url=redact_url(parsed))
                return await self._store(track, Fetched(track, data), "url")
        if "ytdlp" not in self.config.sources.source_order:
            reasons.setdefault("ytdlp", "disabled by source_order")
            raise NoPreviewError(SOURCE, f"no audio at {redact_url(parsed)}", reasons=reasons)
        try:
            fetched = await self.sources["ytdlp"].fetch(Wanted(url=url))
        except UnsafeURLError:
            raise
        except SourceError as exc:
            reasons["ytdlp"] = exc.reason
            raise NoPreviewError(SOURCE, f"no audio at {redact_url(parsed)}",
                                 reasons=reasons) from exc
        return await self._store(fetched.track, fetched, "ytdlp")
