"""One guarded HTTP client for every source: timeouts, retries, a URL guard and capped downloads.

Everything the sources fetch from the network goes through :class:`HttpClient` (except
spotipy, which brings its own ``requests`` session for the configured Spotify endpoints, and
yt-dlp, confined behind its own guarded proxy: :mod:`bot.sources.ytdlp`). It

- refuses URLs that are not http(s) or whose host resolves to a non-public address, checking
  every redirect hop before connecting to it; the connector's resolver checks the addresses
  again and aiohttp connects to exactly those, with no second lookup, so the checked address
  is the one used (:mod:`bot.sources.urlguard`);
- retries 429 (honouring ``Retry-After``), 5xx, timeouts and connection errors with exponential
  backoff and jitter (:mod:`bot.sources.retry`);
- downloads with a byte cap and a time limit that hold while the body streams (at most
  ``max_bytes`` plus one chunk is ever held), and checks that what arrived is complete and
  is audio.

URLs are logged and put into messages without credentials or secret query values
(:func:`~bot.sources.urlguard.redact_url`): preview URLs carry signed tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import yarl
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from bot.sources.errors import (
    DownloadTooLargeError,
    NotAudioError,
    RateLimitedError,
    SourceError,
    SourceUnavailableError,
    TrackNotFoundError,
)
from bot.sources.retry import parse_retry_after, with_retries
from bot.sources.sniff import sniff_audio
from bot.sources.urlguard import (
    Networks,
    check_url,
    parse_networks,
    redact_url,
    redact_urls,
    refuse_private,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Redirects followed before giving up.
MAX_REDIRECTS = 5
#: Largest JSON body accepted, in bytes.
MAX_JSON_BYTES = 4 * 1024 * 1024
USER_AGENT = "mood-companion/0.1"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_NON_AUDIO_TYPES = ("text/", "image/", "application/json", "application/xml",
                    "application/xhtml", "application/javascript", "application/pdf")


class PublicOnlyResolver(ThreadedResolver):
    """Resolves like the default resolver, then refuses non-public answers at connect time.

    aiohttp's connector connects to the addresses this returns (IP literals skip the resolver
    and are checked by :func:`~bot.sources.urlguard.check_url` before every hop), so what is
    checked is what is connected to.
    """

    def __init__(self, allowed_networks: Networks = ()) -> None:
        super().__init__()
        self._allowed_networks = allowed_networks

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        refuse_private(host, (r["host"] for r in results), "http", self._allowed_networks)
        return results


class HttpClient:
    """An aiohttp session with the project's network rules (see the module docstring).

    Create it inside a running event loop, use it as ``async with HttpClient(...) as http:``
    or call :meth:`close` at the end.

    Parameters
    ----------
    timeout_s : float
        Limit for one attempt of one request (connect, redirects and body), in seconds.
    retries : int
        Further attempts after the first one for 429, 5xx, timeouts and connection errors.
    max_retry_after_s : float
        Longest wait between attempts; a server asking for a longer ``Retry-After`` gets no
        more attempts (:class:`RateLimitedError` at once).
    allow_private : bool
        Accept hosts on any private and loopback network.
    allowed_networks : iterable of str
        Non-public networks (CIDR) accepted even when ``allow_private`` is False.
    backoff_base_s : float
        First backoff step; attempt ``n`` waits about ``backoff_base_s * 2**n`` seconds.
    user_agent : str
        ``User-Agent`` header.
    """

    def __init__(self, *, timeout_s: float = 10.0, retries: int = 3,
                 max_retry_after_s: float = 30.0, allow_private: bool = False,
                 allowed_networks: Iterable[str] = (), backoff_base_s: float = 0.5,
                 user_agent: str = USER_AGENT) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries!r}")
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_retry_after_s = max_retry_after_s
        self.allow_private = allow_private
        self.allowed_networks = parse_networks(allowed_networks)
        self.backoff_base_s = backoff_base_s
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the underlying session (it is created again on the next request)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=None if self.allow_private else PublicOnlyResolver(self.allowed_networks),
                limit=32)
            # trust_env=False: an environment proxy would hide where requests really go.
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self.user_agent},
                timeout=aiohttp.ClientTimeout(total=None), trust_env=False)
        return self._session

    async def check_url(self, url: str | yarl.URL, *, source: str = "http") -> yarl.URL:
        """:func:`check_url` with this client's ``allow_private`` and ``allowed_networks``."""
        return await check_url(url, allow_private=self.allow_private,
                               allowed_networks=self.allowed_networks, source=source)

    # -- public requests ---------------------------------------------------------------

    async def get_json(self, url: str, *, params: dict[str, str] | None = None,
                       source: str = "http",
                       validate: Callable[[Any], None] | None = None) -> Any:
        """GET a JSON document, with retries.

        Parameters
        ----------
        url : str
            The endpoint.
        params : dict, optional
            Query parameters, added to the URL.
        source : str
            Name used in messages and logs.
        validate : callable, optional
            Called with the decoded document inside the retry loop; it may raise
            :class:`RateLimitedError` or :class:`SourceUnavailableError` to have the request
            retried (APIs that report errors inside an HTTP 200), or any other
            :class:`SourceError` to fail at once.

        Returns
        -------
        Any
            The decoded JSON.

        Raises
        ------
        RateLimitedError, SourceUnavailableError
            After the last attempt.
        TrackNotFoundError
            HTTP 404 or 410.
        UnsafeURLError
            The URL or a redirect is refused.
        SourceError
            Any other HTTP error status, a body over 4 MiB or invalid JSON.
        """
        target = yarl.URL(url).update_query(params) if params else yarl.URL(url)

        async def attempt() -> Any:
            async with asyncio.timeout(self.timeout_s):
                resp = await self._open(target, source, {"Accept": "application/json"})
                try:
                    body = await self._read_capped(resp, MAX_JSON_BYTES, source)
                finally:
                    resp.release()
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise SourceError(source, f"invalid JSON from {redact_url(target)}") from exc
            if validate is not None:
                validate(data)
            return data

        return await self._with_retries(source, target, attempt, self.timeout_s)

    async def download(self, url: str, *, max_bytes: int, timeout: float | None = None,
                       source: str = "http") -> bytes:
        """Download an audio file, refusing what is too large, truncated or not audio.

        Parameters
        ----------
        url : str
            The file's URL.
        max_bytes : int
            Largest accepted size; the download stops as soon as more arrives.
        timeout : float, optional
            Limit for one attempt in seconds (default: the client's ``timeout_s``).
        source : str
            Name used in messages and logs.

        Returns
        -------
        bytes
            The whole file, whose first bytes are a known audio format (:func:`sniff_audio`).

        Raises
        ------
        DownloadTooLargeError
            ``Content-Length`` or the bytes received exceed ``max_bytes``.
        NotAudioError
            A text/HTML/JSON content type, bytes that are no known audio format, an empty
            body, or fewer bytes than ``Content-Length`` announced.
        RateLimitedError, SourceUnavailableError, UnsafeURLError, TrackNotFoundError
            As for :meth:`get_json`.
        """
        target = yarl.URL(url)
        limit = timeout if timeout is not None else self.timeout_s

        async def attempt() -> bytes:
            async with asyncio.timeout(limit):
                resp = await self._open(target, source, {"Accept-Encoding": "identity",
                                                         "Accept": "audio/*, */*;q=0.1"})
                try:
                    return await self._read_audio(resp, max_bytes, source)
                finally:
                    resp.release()

        return await self._with_retries(source, target, attempt, limit)

    # -- internals -----------------------------------------------------------------------

    async def _with_retries(self, source: str, url: yarl.URL,
                            attempt: Callable[[], Awaitable[T]], limit: float) -> T:
        async def translated() -> T:
            try:
                return await attempt()
            except TimeoutError as exc:
                raise SourceUnavailableError(
                    source, f"no answer from {redact_url(url)} within {limit:g} s") from exc
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                raise SourceUnavailableError(
                    source, f"connection to {redact_url(url)} failed: "
                            f"{redact_urls(str(exc)) or type(exc).__name__}") from exc

        return await with_retries(translated, source=source, retries=self.retries,
                                  max_retry_after_s=self.max_retry_after_s,
                                  backoff_base_s=self.backoff_base_s)

    async def _open(self, url: yarl.URL, source: str,
                    headers: dict[str, str]) -> aiohttp.ClientResponse:
        """GET ``url`` following redirects by hand, each hop checked before connecting."""
        session = self._get_session()
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            await self.check_url(current, source=source)
            resp = await session.get(current, headers=headers, allow_redirects=False)
            location = resp.headers.get("Location")
            if resp.status in _REDIRECTS and location:
                resp.release()
                try:
                    current = resp.url.join(yarl.URL(location))
                except ValueError as exc:
                    raise SourceError(source, "invalid redirect Location") from exc
                log.debug("%s: redirected to %s", source, redact_url(current))
                continue
            try:
                self._check_status(resp, source)
            except BaseException:
                resp.release()
                raise
            return resp
        raise SourceError(source, f"more than {MAX_REDIRECTS} redirects from {redact_url(url)}")

    @staticmethod
    def _check_status(resp: aiohttp.ClientResponse, source: str) -> None:
        status, where = resp.status, redact_url(resp.url)
        if 200 <= status < 300:
            return
        if status == 429:
            raise RateLimitedError(source, f"HTTP 429 from {where}",
                                   retry_after=parse_retry_after(resp.headers.get("Retry-After")))
        if status >= 500:
            raise SourceUnavailableError(source, f"HTTP {status} from {where}")
        if status in (404, 410):
            raise TrackNotFoundError(source, f"HTTP {status} from {where}")
        raise SourceError(source, f"HTTP {status} from {where}")

    @staticmethod
    async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int, source: str) -> bytes:
        length = resp.content_length
        if length is not None and length > max_bytes:
            raise SourceError(source, f"response of {length} bytes from {redact_url(resp.url)} "
                                      f"is larger than {max_bytes}")
        body = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise SourceError(source, f"response from {redact_url(resp.url)} is larger than "
                                          f"{max_bytes} bytes")
        return bytes(body)

    @staticmethod
    async def _read_audio(resp: aiohttp.ClientResponse, max_bytes: int, source: str) -> bytes:
        where = redact_url(resp.url)
        ctype = resp.content_type.lower()
        if ctype.startswith(_NON_AUDIO_TYPES):
            raise NotAudioError(source, f"{where} sent {ctype}, not audio")
        length = resp.content_length
        if resp.headers.get("Content-Encoding", "identity").lower() not in ("identity", ""):
            length = None  # a compressed length says nothing about the decoded bytes
        if length is not None and length > max_bytes:
            raise DownloadTooLargeError(source, f"{where} is {length} bytes, more than the "
                                                f"{max_bytes} allowed")
        body = bytearray()
        sniffed = False
        try:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise DownloadTooLargeError(source, f"{where} sent more than the "
                                                        f"{max_bytes} bytes allowed")
                if not sniffed and len(body) >= 12:
                    if sniff_audio(bytes(body[:12])) is None:
                        raise NotAudioError(source, f"{where} ({ctype}) is not a known audio "
                                                    "format")
                    sniffed = True
        except aiohttp.ClientPayloadError as exc:
            got = f"{len(body)} of {length}" if length is not None else f"{len(body)}"
            raise NotAudioError(source, f"{where} ended early: got {got} bytes") from exc
        if length is not None and len(body) != length:
            raise NotAudioError(source, f"{where} ended early: got {len(body)} of {length} bytes")
        if not body:
            raise NotAudioError(source, f"{where} sent an empty body")
        if not sniffed and sniff_audio(bytes(body)) is None:
            raise NotAudioError(source, f"{where} ({ctype}) is not a known audio format")
        return bytes(body)
