"""Spotify (through spotipy): search and track metadata, and audio features where still allowed.

Since 2024-11-27 Spotify gives new apps neither audio features nor preview URLs, so Spotify is
a metadata source here; previews come from the other sources. An app whose audio-features
request is refused (HTTP 403) is remembered for the life of the process and never asks again.

spotipy is synchronous (``requests``), so every call runs in a worker thread. Retries are done
here, not by spotipy's urllib3 adapter, which would sleep for any ``Retry-After`` Spotify
sends (sometimes hours) and turn every 5xx into a bare 429. Every answer is read with a byte
cap and a deadline (:class:`_CappedSession`): requests' own timeout limits each socket read,
not the whole answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import requests
import spotipy
import urllib3.exceptions
from pydantic import SecretStr
from spotipy.cache_handler import MemoryCacheHandler
from spotipy.exceptions import SpotifyException, SpotifyOauthError
from spotipy.oauth2 import SpotifyClientCredentials

from bot.sources.errors import (
    RateLimitedError,
    SourceError,
    SourceUnavailableError,
    TrackNotFoundError,
)
from bot.sources.links import SPOTIFY_ID, parse_spotify_track_id
from bot.sources.models import TrackInfo
from bot.sources.retry import parse_retry_after, with_retries

log = logging.getLogger(__name__)

T = TypeVar("T")

SOURCE = "spotify"
_SECRET_RE = re.compile(r"(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]+")
#: Largest answer accepted from the API, in bytes (a page of search results is a few kB).
MAX_ANSWER_BYTES = 4 * 1024 * 1024
_READ_CHUNK = 64 * 1024


class _RedactAuthorization(logging.Filter):
    """spotipy's debug log prints request headers: the Basic header holds the client secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Basic" in message or "Bearer" in message:
            record.msg = _SECRET_RE.sub(r"\1 <redacted>", message)
            record.args = None
        return True


def _install_log_redaction() -> None:
    for name in ("spotipy.client", "spotipy.oauth2"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactAuthorization) for f in logger.filters):
            logger.addFilter(_RedactAuthorization())


_install_log_redaction()


class _AnswerTooLargeError(requests.RequestException):
    """An answer passed :data:`MAX_ANSWER_BYTES`; the rest of it was not read."""


class _CappedSession(requests.Session):
    """A session that reads every answer in full before spotipy sees it, within a byte cap
    and a deadline for the whole request.

    requests' timeout bounds each socket read, so a server dripping one byte per read
    timeout holds the worker thread for as long as it likes, and an endless body fills
    memory. Here each read takes at most one socket read (``read1``), and the loop stops
    past ``max_bytes`` or past ``deadline_s`` since the request started.

    Parameters
    ----------
    max_bytes : int
        Largest body accepted (after content decoding).
    deadline_s : float
        Time allowed for a whole request: connecting, headers and body.
    """

    def __init__(self, *, max_bytes: int, deadline_s: float) -> None:
        super().__init__()
        self.max_bytes = max_bytes
        self.deadline_s = deadline_s

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send ``request`` and read its answer (see the class)."""
        deadline = time.monotonic() + self.deadline_s
        kwargs["stream"] = True
        response = super().send(request, **kwargs)
        # read1 (urllib3 2): at most one socket read per call, so the deadline is checked
        # between reads of at most the read timeout each.
        read = getattr(response.raw, "read1", None) or response.raw.read
        body = bytearray()
        try:
            while True:
                if time.monotonic() > deadline:
                    raise requests.Timeout(f"the answer took longer than {self.deadline_s:g} s",
                                           request=request, response=response)
                chunk = read(_READ_CHUNK)
                if not chunk:
                    break
                body += chunk
                if len(body) > self.max_bytes:
                    raise _AnswerTooLargeError(f"the answer is larger than {self.max_bytes} "
                                               "bytes", request=request, response=response)
        except BaseException as exc:
            response.close()
            # As requests' iter_content translates them (read1 bypasses it).
            if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
                raise requests.ReadTimeout(exc, request=request) from exc
            if isinstance(exc, urllib3.exceptions.ProtocolError):
                raise requests.exceptions.ChunkedEncodingError(exc, request=request) from exc
            if isinstance(exc, urllib3.exceptions.DecodeError):
                raise requests.exceptions.ContentDecodingError(exc, request=request) from exc
            raise
        response._content = bytes(body)  # what .json() and .text read
        response._content_consumed = True
        response.close()  # the body is read: the connection goes back to the pool
        return response


class _ClientCredentials(SpotifyClientCredentials):
    """Client-credentials flow against a configurable token endpoint.

    spotipy reads the endpoint from the ``OAUTH_TOKEN_URL`` class attribute; an instance
    attribute of the same name takes precedence.
    """

    def __init__(self, *, token_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.OAUTH_TOKEN_URL = token_url


def track_info_from_spotify(item: dict[str, Any]) -> TrackInfo:
    """Convert a Spotify track object (Web API JSON) to :class:`TrackInfo`.

    Parameters
    ----------
    item : dict
        A track object as returned by ``GET /tracks/{id}`` or inside ``/search`` results.

    Returns
    -------
    TrackInfo
    """
    artists = item.get("artists") or [{}]
    duration_ms = item.get("duration_ms")
    return TrackInfo(
        title=str(item.get("name") or ""),
        artist=str(artists[0].get("name") or ""),
        album=(item.get("album") or {}).get("name"),
        duration_s=duration_ms / 1000 if isinstance(duration_ms, int | float) else None,
        isrc=(item.get("external_ids") or {}).get("isrc"),
        provider=SOURCE,
        provider_id=str(item.get("id") or ""),
        url=(item.get("external_urls") or {}).get("spotify"),
        preview_url=item.get("preview_url"),
    )


class SpotifySource:
    """Search, track metadata and audio features from the Spotify Web API.

    Parameters
    ----------
    client_id : str
        The Spotify app's client id.
    client_secret : SecretStr
        The Spotify app's client secret.
    api_base : str
        Web API base URL, ending with ``/``.
    token_url : str
        Token endpoint of the client-credentials flow.
    timeout_s : float
        Limit for one HTTP request in seconds.
    retries : int
        Further attempts after 429, 5xx, timeouts and connection errors.
    max_retry_after_s : float
        Longest ``Retry-After`` honoured; a longer one fails at once.
    backoff_base_s : float
        First backoff step in seconds.
    """

    #: (api_base, client_id) of apps that got 403 on audio features in this process.
    _features_denied: ClassVar[set[tuple[str, str]]] = set()
    _denied_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, client_id: str, client_secret: SecretStr, *,
                 api_base: str = "https://api.spotify.com/v1/",
                 token_url: str = "https://accounts.spotify.com/api/token",
                 timeout_s: float = 10.0, retries: int = 3, max_retry_after_s: float = 30.0,
                 backoff_base_s: float = 0.5) -> None:
        if not client_id or not client_secret.get_secret_value():
            raise ValueError("Spotify needs both a client id and a client secret")
        self.api_base = api_base if api_base.endswith("/") else api_base + "/"
        self.client_id = client_id
        self.retries = retries
        self.max_retry_after_s = max_retry_after_s
        self.backoff_base_s = backoff_base_s
        # One plain requests session (no urllib3 retries: see the module docstring); the
        # token lives in memory only, never in spotipy's default ./.cache file.
        self._session = _CappedSession(max_bytes=MAX_ANSWER_BYTES, deadline_s=timeout_s)
        # The API never redirects; following one could lead the private-network guard astray
        # (this session does not go through HttpClient's per-hop check).
        self._session.max_redirects = 0
        auth = _ClientCredentials(
            token_url=token_url, client_id=client_id,
            client_secret=client_secret.get_secret_value(), requests_session=self._session,
            requests_timeout=timeout_s, cache_handler=MemoryCacheHandler())
        self._client = spotipy.Spotify(auth_manager=auth, requests_session=self._session,
                                       requests_timeout=timeout_s, retries=0,
                                       status_retries=0)
        # spotipy has no constructor argument for the API base.
        self._client.prefix = self.api_base

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    @property
    def features_denied(self) -> bool:
        """Whether this app was refused audio features earlier in this process."""
        return (self.api_base, self.client_id) in self._features_denied

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        async def attempt() -> T:
            try:
                return await asyncio.to_thread(fn)
            except SpotifyException as exc:
                raise self._translate(exc, what) from exc
            except SpotifyOauthError as exc:
                raise self._translate_auth(exc) from exc
            except requests.Timeout as exc:
                raise SourceUnavailableError(SOURCE, f"{what}: timed out") from exc
            except _AnswerTooLargeError as exc:
                raise SourceError(SOURCE, f"{what}: {exc}") from exc
            except requests.exceptions.ChunkedEncodingError as exc:
                raise SourceUnavailableError(SOURCE, f"{what}: the answer ended early "
                                                     "(connection dropped)") from exc
            except requests.TooManyRedirects as exc:
                raise SourceError(SOURCE, f"{what}: the API answered with a redirect, which is "
                                          "not followed") from exc
            except requests.RequestException as exc:
                raise SourceUnavailableError(
                    SOURCE, f"{what}: connection failed ({type(exc).__name__})") from exc

        return await with_retries(attempt, source=SOURCE, retries=self.retries,
                                  max_retry_after_s=self.max_retry_after_s,
                                  backoff_base_s=self.backoff_base_s)

    @staticmethod
    def _translate(exc: SpotifyException, what: str) -> SourceError:
        status = int(exc.http_status or 0)
        if status == 429:
            headers = exc.headers or {}
            return RateLimitedError(SOURCE, f"{what}: HTTP 429",
                                    retry_after=parse_retry_after(headers.get("Retry-After")))
        if status >= 500:
            return SourceUnavailableError(SOURCE, f"{what}: HTTP {status}")
        if status in (400, 404):
            return TrackNotFoundError(SOURCE, f"{what}: HTTP {status}")
        return SourceError(SOURCE, f"{what}: HTTP {status}")

    @staticmethod
    def _translate_auth(exc: SpotifyOauthError) -> SourceError:
        # spotipy drops the status; the requests error it was raised from still has it.
        context = exc.__context__
        response = context.response if isinstance(context, requests.HTTPError) else None
        status = response.status_code if response is not None else 0
        if status == 429 and response is not None:
            return RateLimitedError(SOURCE, "token request: HTTP 429", retry_after=(
                parse_retry_after(response.headers.get("Retry-After"))))
        if status >= 500:
            return SourceUnavailableError(SOURCE, f"token request: HTTP {status}")
        return SourceError(SOURCE, f"authentication failed (HTTP {status or '?'}): "
                                   f"{exc.error or 'no reason given'}")

    async def search(self, query: str) -> TrackInfo | None:
        """The best match of a track search.

        Parameters
        ----------
        query : str
            Free text (``"artist title"`` works best).

        Returns
        -------
        TrackInfo or None
            Spotify's first result, or None when nothing matched.

        Raises
        ------
        SourceError
            Rate limits, outages and authentication failures (see :mod:`bot.sources.errors`).
        """
        results = await self.search_tracks(query, limit=1)
        return results[0] if results else None

    async def search_tracks(self, query: str, *, limit: int = 5) -> list[TrackInfo]:
        """Search tracks.

        Parameters
        ----------
        query : str
            Free text (``"artist title"`` works best).
        limit : int
            Most results returned.

        Returns
        -------
        list of TrackInfo
            Best match first; empty when nothing matched.

        Raises
        ------
        SourceError
            Rate limits, outages and authentication failures (see :mod:`bot.sources.errors`).
        """
        query = query.strip()
        if not query:
            raise ValueError("empty search query")
        data = await self._call("search", lambda: self._client.search(
            q=query, limit=limit, type="track"))
        items = ((data or {}).get("tracks") or {}).get("items") or []
        return [track_info_from_spotify(item) for item in items if item]

    async def track(self, spotify_id: str) -> TrackInfo:
        """Metadata of one track.

        Parameters
        ----------
        spotify_id : str
            A track id, or a Spotify track URL or URI.

        Returns
        -------
        TrackInfo

        Raises
        ------
        TrackNotFoundError
            Unknown or malformed id.
        SourceError
            Rate limits, outages and authentication failures.
        """
        track_id = parse_spotify_track_id(spotify_id) or spotify_id.strip()
        if not re.fullmatch(SPOTIFY_ID, track_id):
            raise TrackNotFoundError(SOURCE, f"not a Spotify track id: {spotify_id[:80]!r}")
        data = await self._call("track", lambda: self._client.track(track_id))
        if not data:
            raise TrackNotFoundError(SOURCE, f"no track {track_id}")
        return track_info_from_spotify(data)

    async def audio_features(self, spotify_id: str) -> dict[str, Any] | None:
        """Spotify's audio features of a track, when this app may still read them.

        Parameters
        ----------
        spotify_id : str
            A track id, URL or URI.

        Returns
        -------
        dict or None
            The numeric features (``danceability``, ``energy``, ``valence``, ``tempo``, ...),
            or None when the app has no access (HTTP 403, remembered: no further request is
            made in this process) or Spotify has no features for the track.

        Raises
        ------
        SourceError
            Rate limits, outages and other failures.
        """
        if self.features_denied:
            return None
        track_id = parse_spotify_track_id(spotify_id) or spotify_id.strip()
        if not re.fullmatch(SPOTIFY_ID, track_id):
            raise TrackNotFoundError(SOURCE, f"not a Spotify track id: {spotify_id[:80]!r}")
        # GET /audio-features/{id} directly: spotipy's audio_features() asks the batch
        # endpoint and warns about the deprecation on every call.
        try:
            data = await self._call("audio features",
                                    lambda: self._client._get(f"audio-features/{track_id}"))
        except SourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, SpotifyException) and cause.http_status == 403:
                with self._denied_lock:
                    self._features_denied.add((self.api_base, self.client_id))
                log.info("spotify: this app has no access to audio features (HTTP 403); "
                         "not asking again")
                return None
            raise
        if not isinstance(data, dict):
            return None
        return {k: v for k, v in data.items()
                if isinstance(v, int | float) and not isinstance(v, bool)}
