"""Fake Spotify, Deezer and iTunes APIs and a misbehaving file host, served on 127.0.0.1.

Each fake is an aiohttp application run by :class:`aiohttp.test_utils.TestServer` inside the
test's event loop (``async with FakeDeezer() as deezer:``). They answer with the JSON shapes of
the real services, count hits per path, and can be told to misbehave (:meth:`FakeService.fail`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fakes.audio import tone_mp3


@dataclass(frozen=True)
class Song:
    """One track of the fake catalogue, known to every fake service."""

    title: str
    artist: str
    album: str
    isrc: str
    duration_s: int
    spotify_id: str
    deezer_id: int
    itunes_id: int


CATALOGUE = (
    Song("Sunny Sine", "The Oscillators", "Waveforms", "GBAYE0000001", 201,
         "4uLU6hMCjMI75M1A2tKUQC", 3135556, 1440001),
    Song("Low Hum", "Square Waves", "Harmonics", "USRC10000002", 187,
         "0eGsygTp906u18L0Oimnem", 3135557, 1440002),
)


@dataclass
class Fault:
    """A canned answer replacing the real one for matching paths."""

    prefix: str
    status: int
    times: int | None  # None: forever
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    body: Any = None


class FakeService:
    """Base of the fakes: a TestServer, hit counters and fault injection.

    Parameters
    ----------
    host : str
        Loopback address to listen on (``127.0.0.2`` plays a private host in guard tests).
    port : int
        Port to listen on; 0 picks a free one.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = web.Application(middlewares=[self._middleware])
        self.hits: Counter[str] = Counter()
        self.faults: list[Fault] = []
        self.host = host
        self._port = port
        self._server: TestServer | None = None

    async def __aenter__(self) -> Self:
        self._server = TestServer(self.app, host=self.host, port=self._port or None)
        await self._server.start_server()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._server is not None
        await self._server.close()

    @property
    def port(self) -> int:
        """The port listened on."""
        assert self._server is not None and self._server.port is not None
        return self._server.port

    @property
    def base(self) -> str:
        """``http://<host>:<port>`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def hits_under(self, prefix: str) -> int:
        """Requests whose path starts with ``prefix``."""
        return sum(n for path, n in self.hits.items() if path.startswith(prefix))

    def fail(self, prefix: str, status: int, *, times: int | None = 1,
             headers: dict[str, str] | None = None, delay_s: float = 0.0,
             body: Any = None) -> None:
        """Answer ``status`` (after ``delay_s``) to the next ``times`` requests under ``prefix``."""
        self.faults.append(Fault(prefix, status, times, headers or {}, delay_s, body))

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.hits[request.path] += 1
        for fault in self.faults:
            if request.path.startswith(fault.prefix) and fault.times != 0:
                if fault.times is not None:
                    fault.times -= 1
                if fault.delay_s:
                    await asyncio.sleep(fault.delay_s)
                if fault.status == 200:
                    return web.json_response(fault.body, headers=fault.headers)
                return web.json_response(fault.body or {"error": {"status": fault.status}},
                                         status=fault.status, headers=fault.headers)
        response: web.StreamResponse = await handler(request)
        return response


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _matches(song: Song, query: str) -> bool:
    """Deezer-like matching: advanced ``artist:"x" track:"y"`` or all words present."""
    fields = dict(re.findall(r'(artist|track):"([^"]*)"', query))
    if fields:
        return (fields.get("artist", "").lower() in song.artist.lower()
                and fields.get("track", "").lower() in song.title.lower())
    haystack = set(_words(f"{song.artist} {song.title}"))
    words = _words(query)
    return bool(words) and all(w in haystack for w in words)


# --- Spotify --------------------------------------------------------------------------------


class FakeSpotify(FakeService):
    """Token endpoint (checks Basic auth), /v1/search, /v1/tracks/{id}, /v1/audio-features/{id}.

    Attributes
    ----------
    features_status : int
        Status of audio-features answers (403 like new apps get; 200 gives features).
    """

    CLIENT_ID = "fake-client-id"
    CLIENT_SECRET = "fake-client-secret-XYZ"
    TOKEN = "fake-access-token-123"

    def __init__(self) -> None:
        super().__init__()
        self.features_status = 403
        self.app.router.add_post("/api/token", self._token)
        self.app.router.add_get("/v1/search", self._search)
        self.app.router.add_get("/v1/tracks/{id}", self._track)
        self.app.router.add_get("/v1/audio-features/{id}", self._features)

    @property
    def api_base(self) -> str:
        """Web API base for :class:`SpotifySource`."""
        return f"{self.base}/v1/"

    @property
    def token_url(self) -> str:
        """Token endpoint for :class:`SpotifySource`."""
        return f"{self.base}/api/token"

    def _item(self, song: Song) -> dict[str, Any]:
        return {
            "id": song.spotify_id, "name": song.title, "duration_ms": song.duration_s * 1000,
            "artists": [{"name": song.artist}], "album": {"name": song.album},
            "external_ids": {"isrc": song.isrc}, "preview_url": None,
            "external_urls": {"spotify": f"https://open.spotify.com/track/{song.spotify_id}"},
        }

    async def _token(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(f"{self.CLIENT_ID}:{self.CLIENT_SECRET}".encode()).decode()
        form = await request.post()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"error": "invalid_client"}, status=400)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        return web.json_response({"access_token": self.TOKEN, "token_type": "Bearer",
                                  "expires_in": 3600})

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.TOKEN}"

    async def _search(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": {"status": 401}}, status=401)
        query = request.query.get("q", "")
        limit = int(request.query.get("limit", "10"))
        items = [self._item(s) for s in CATALOGUE if _matches(s, query)][:limit]
        return web.json_response({"tracks": {"items": items, "total": len(items)}})

    async def _track(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": {"status": 401}}, status=401)
        for song in CATALOGUE:
            if song.spotify_id == request.match_info["id"]:
                return web.json_response(self._item(song))
        return web.json_response({"error": {"status": 404, "message": "Non existing id"}},
                                 status=404)

    async def _features(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": {"status": 401}}, status=401)
        if self.features_status != 200:
            return web.json_response({"error": {"status": self.features_status,
                                                "message": "Forbidden"}},
                                     status=self.features_status)
        return web.json_response({"id": request.match_info["id"], "danceability": 0.7,
                                  "energy": 0.8, "valence": 0.9, "tempo": 120.0, "mode": 1,
                                  "type": "audio_features"})


# --- Deezer ---------------------------------------------------------------------------------


class FakeDeezer(FakeService):
    """/search, /track/{id}, /track/isrc:{ISRC} and signed preview MP3s (440 Hz).

    Attributes
    ----------
    quota_errors : int
        How many of the next API answers are Deezer's quota error (code 4, HTTP 200).
    no_preview : set of int
        Deezer ids whose ``preview`` is empty.
    catalogue : tuple of Song
        The songs it knows (default :data:`CATALOGUE`).
    audio_by_id : dict
        Preview audio of some songs by Deezer id (the others get :attr:`audio`).
    """

    def __init__(self, catalogue: Sequence[Song] = CATALOGUE) -> None:
        super().__init__()
        self.quota_errors = 0
        self.no_preview: set[int] = set()
        self.catalogue = tuple(catalogue)
        self.audio_by_id: dict[int, bytes] = {}
        self.audio = tone_mp3(3.0, 440.0)
        self.app.router.add_get("/search", self._search)
        self.app.router.add_get("/track/{id}", self._track)
        self.app.router.add_get("/preview/{id}.mp3", self._preview)

    def _item(self, song: Song) -> dict[str, Any]:
        preview = "" if song.deezer_id in self.no_preview else \
            f"{self.base}/preview/{song.deezer_id}.mp3?hdnea=exp=1~acl=*~hmac=SECRETSIG"
        return {
            "id": song.deezer_id, "title": song.title, "duration": song.duration_s,
            "isrc": song.isrc, "link": f"https://www.deezer.com/track/{song.deezer_id}",
            "preview": preview, "artist": {"name": song.artist}, "album": {"title": song.album},
        }

    def _quota(self) -> web.Response | None:
        if self.quota_errors > 0:
            self.quota_errors -= 1
            return web.json_response({"error": {"type": "Exception", "code": 4,
                                                "message": "Quota limit exceeded"}})
        return None

    async def _search(self, request: web.Request) -> web.Response:
        if (quota := self._quota()) is not None:
            return quota
        query = request.query.get("q", "")
        limit = int(request.query.get("limit", "25"))
        items = [self._item(s) for s in self.catalogue if _matches(s, query)][:limit]
        return web.json_response({"data": items, "total": len(items)})

    async def _track(self, request: web.Request) -> web.Response:
        if (quota := self._quota()) is not None:
            return quota
        key = request.match_info["id"]
        for song in self.catalogue:
            if key in (str(song.deezer_id), f"isrc:{song.isrc}"):
                return web.json_response(self._item(song))
        return web.json_response({"error": {"type": "DataException", "message": "no data",
                                            "code": 800}})

    async def _preview(self, request: web.Request) -> web.Response:
        if request.query.get("hdnea") is None:
            return web.Response(status=403, text="missing token")
        audio = self.audio_by_id.get(int(request.match_info["id"]), self.audio)
        return web.Response(body=audio, content_type="audio/mpeg")


# --- iTunes ---------------------------------------------------------------------------------


class FakeItunes(FakeService):
    """/search?term=...&media=music&entity=song (text/javascript, like Apple) and previews
    (660 Hz, or :attr:`audio_by_id` by iTunes id) of :attr:`catalogue`."""

    def __init__(self, catalogue: Sequence[Song] = CATALOGUE) -> None:
        super().__init__()
        self.catalogue = tuple(catalogue)
        self.audio_by_id: dict[int, bytes] = {}
        self.audio = tone_mp3(3.0, 660.0)
        self.app.router.add_get("/search", self._search)
        self.app.router.add_get("/preview/{id}.m4a", self._preview)

    async def _search(self, request: web.Request) -> web.Response:
        assert request.query.get("media") == "music"
        assert request.query.get("entity") == "song"
        term = request.query.get("term", "")
        limit = int(request.query.get("limit", "50"))
        results = [{
            "trackId": s.itunes_id, "trackName": s.title, "artistName": s.artist,
            "collectionName": s.album, "trackTimeMillis": s.duration_s * 1000,
            "trackViewUrl": f"https://music.apple.com/track/{s.itunes_id}",
            "previewUrl": f"{self.base}/preview/{s.itunes_id}.m4a",
        } for s in self.catalogue if _matches(s, term)][:limit]
        return web.Response(text=json.dumps({"resultCount": len(results), "results": results}),
                            content_type="text/javascript", charset="utf-8")

    async def _preview(self, request: web.Request) -> web.Response:
        audio = self.audio_by_id.get(int(request.match_info["id"]), self.audio)
        return web.Response(body=audio, content_type="audio/mpeg")


# --- A file host with every fault -----------------------------------------------------------


class FakeFiles(FakeService):
    """Audio files (880 Hz MP3) and the ways downloads go wrong.

    Routes: ``/audio.mp3``, ``/long.mp3`` (40 s), ``/json``, ``/html``, ``/fake-audio``
    (HTML sent as audio/mpeg), ``/truncated``, ``/big`` and ``/big-chunked`` (``big_size``
    bytes), ``/slow`` (answers after ``slow_s``), ``/redirect?to=URL``, ``/hops/{n}``
    (n redirects, then audio), and the hostile ones: ``/endless.mp3`` and ``/endless.html``
    (a body that never ends), ``/huge.mp3`` (claims 2 GiB, then never ends), ``/drip.mp3``
    (one byte per ``drip_s``). :attr:`sent` counts the body bytes written per path.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.sent: Counter[str] = Counter()
        self.drip_s = 1.0
        self.audio = tone_mp3(2.0, 880.0)
        self.big_size = 300_000
        self.slow_s = 0.6
        routes = self.app.router
        routes.add_get("/audio.mp3", self._audio)
        routes.add_get("/long.mp3", self._long)
        routes.add_get("/json", self._json)
        routes.add_get("/html", self._html)
        routes.add_get("/fake-audio", self._fake_audio)
        routes.add_get("/truncated", self._truncated)
        routes.add_get("/big", self._big)
        routes.add_get("/big-chunked", self._big_chunked)
        routes.add_get("/slow", self._slow)
        routes.add_get("/redirect", self._redirect)
        routes.add_get("/hops/{n}", self._hops)
        routes.add_get("/endless.mp3", self._endless)
        routes.add_get("/endless.html", self._endless)
        routes.add_get("/huge.mp3", self._endless)
        routes.add_get("/drip.mp3", self._drip)

    async def _audio(self, request: web.Request) -> web.Response:
        return web.Response(body=self.audio, content_type="audio/mpeg")

    async def _long(self, request: web.Request) -> web.Response:
        return web.Response(body=tone_mp3(40.0, 880.0), content_type="audio/mpeg")

    async def _json(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "n": self.hits[request.path]})

    async def _html(self, request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><html><body>Not audio</body></html>",
                            content_type="text/html")

    async def _fake_audio(self, request: web.Request) -> web.Response:
        return web.Response(body=b"<!doctype html><html><body>gotcha</body></html>",
                            content_type="audio/mpeg")

    async def _truncated(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        resp.content_length = len(self.audio)
        await resp.prepare(request)
        await resp.write(self.audio[: len(self.audio) // 2])
        assert request.transport is not None
        request.transport.close()  # the connection drops mid-body
        return resp

    def _big_body(self) -> bytes:
        return (self.audio * (self.big_size // len(self.audio) + 1))[: self.big_size]

    async def _big(self, request: web.Request) -> web.Response:
        return web.Response(body=self._big_body(), content_type="audio/mpeg")

    async def _big_chunked(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        resp.enable_chunked_encoding()  # no Content-Length: the cap must stop the stream
        await resp.prepare(request)
        body = self._big_body()
        for start in range(0, len(body), 16_384):
            await resp.write(body[start: start + 16_384])
        await resp.write_eof()
        return resp

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.slow_s)
        return web.Response(body=self.audio, content_type="audio/mpeg")

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def _hops(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n <= 0:
            return web.Response(body=self.audio, content_type="audio/mpeg")
        raise web.HTTPFound(f"/hops/{n - 1}")

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        html = request.path.endswith(".html")
        resp = web.StreamResponse(headers={"Content-Type": "text/html" if html else "audio/mpeg"})
        if request.path == "/huge.mp3":
            resp.content_length = 2 * 1024**3
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:  # so that `sent` counts what left, not what waits in our kernel
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        block = b"<p>" + b"x" * 65_530 + b"</p>" if html else self.audio
        try:
            while True:  # until the client goes away
                await resp.write(block)
                self.sent[request.path] += len(block)
        except ConnectionError:
            return resp

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for byte in self.audio:
                await resp.write(bytes([byte]))
                self.sent[request.path] += 1
                await asyncio.sleep(self.drip_s)
        except ConnectionError:
            pass
        return resp


# --- Faults after the headers, for any fake (tests/test_faults.py) --------------------------


class BodyFaults:
    """Makes any fake's real answers go wrong after their headers were sent.

    Create it before the fake starts (it adds a middleware to the fake's application), then
    :meth:`set` a fault for a path prefix. Kinds:

    ``"drip"``
        The real body, one byte every :attr:`drip_s` seconds (a slow body: the headers come
        at once, so only a limit on the whole answer catches it).
    ``"truncated"``
        Half of the real body under a ``Content-Length`` announcing all of it, then the
        connection drops.
    ``"oversized"``
        The real body repeated without end (chunked, no ``Content-Length``) until the client
        hangs up: only a byte cap stops it. :attr:`sent` counts the bytes that left.

    Parameters
    ----------
    service : FakeService
        A fake that has not started yet.
    drip_s : float
        Seconds between two bytes of a ``"drip"`` body.
    """

    KINDS = ("drip", "truncated", "oversized")

    def __init__(self, service: FakeService, *, drip_s: float = 0.05) -> None:
        self.drip_s = drip_s
        self.rules: dict[str, str] = {}
        self.sent: Counter[str] = Counter()
        service.app.middlewares.append(self._middleware)

    def set(self, prefix: str, kind: str) -> None:
        """Make every answer under ``prefix`` misbehave as ``kind`` (see the class)."""
        if kind not in self.KINDS:
            raise ValueError(f"unknown body fault {kind!r}, not one of {self.KINDS}")
        self.rules[prefix] = kind

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        kind = next((k for p, k in self.rules.items() if request.path.startswith(p)), None)
        if kind is None or not isinstance(response, web.Response) \
                or not isinstance(response.body, bytes | bytearray):
            return response
        body = bytes(response.body)
        out = web.StreamResponse(status=response.status,
                                 headers={"Content-Type": response.headers.get(
                                     "Content-Type", "application/octet-stream")})
        if kind == "truncated":
            out.content_length = len(body)
        else:
            out.enable_chunked_encoding()
        await out.prepare(request)
        try:
            if kind == "truncated":
                await out.write(body[: len(body) // 2])
                assert request.transport is not None
                request.transport.close()
                return out
            if kind == "drip":
                for byte in body:
                    await out.write(bytes([byte]))
                    self.sent[request.path] += 1
                    await asyncio.sleep(self.drip_s)
            else:
                block = body * (65_536 // max(len(body), 1) + 1)
                while True:  # until the client goes away
                    await out.write(block)
                    self.sent[request.path] += len(block)
            await out.write_eof()
        except ConnectionError:
            pass
        return out
