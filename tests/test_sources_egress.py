"""Downloads that cannot be turned against us: byte caps, time limits, the private-network guard
on every hop and connection, URL identity and credentials in messages.

Real HTTP on loopback: :class:`FakeFiles` on 127.0.0.1 plays a public host (trusted through
``allowed_networks``) and a second one on 127.0.0.2 a private host that must never be reached.
yt-dlp runs for real, in its child process behind the guarded proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import ssl
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.settings import SourceSettings
from bot.sources.base import Fetched, Wanted
from bot.sources.errors import (
    DownloadTooLargeError,
    NoPreviewError,
    SourceError,
    SourceUnavailableError,
    UnsafeURLError,
)
from bot.sources.http import HttpClient
from bot.sources.proxy import GuardedProxy
from bot.sources.resolver import PreviewResolver, ResolverConfig
from bot.sources.urlguard import (
    parse_networks,
    redact_url,
    redact_urls,
    url_identity,
    url_secrets,
)
from bot.sources.ytdlp import CHILD_SCRIPT, YtDlpSource, track_info_from_ytdlp
from tests.fakes.guards import LoopbackGuard, install_loopback_guard
from tests.fakes.servers import FakeFiles

PUBLIC = ["127.0.0.1/32"]  # the one loopback address treated as public
CAP = 20_000  # below 30 s of the fakes' MP3 (about 1.2 kB/s), so a section hits it
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="yt-dlp needs ffmpeg for sections")


@pytest.fixture(autouse=True)
def guard(monkeypatch: pytest.MonkeyPatch) -> LoopbackGuard:
    return install_loopback_guard(monkeypatch)


@pytest.fixture
async def files() -> AsyncIterator[FakeFiles]:
    async with FakeFiles() as server:
        yield server


@pytest.fixture
async def private(files: FakeFiles) -> AsyncIterator[FakeFiles]:
    """A host on 127.0.0.2 (not allowed), on the same port as ``files``."""
    async with FakeFiles(host="127.0.0.2", port=files.port) as server:
        yield server


def ytdlp(tmp_path: Path, **changes: Any) -> YtDlpSource:
    options: dict[str, Any] = dict(allowed_networks=PUBLIC, max_bytes=CAP, timeout_s=3.0,
                                   deadline_s=4.0, work_dir=tmp_path)
    options.update(changes)
    return YtDlpSource(**options)


async def fetch(source: YtDlpSource, url: str) -> Fetched:
    # A bound, so that a regression fails here instead of hanging the run.
    async with asyncio.timeout(10):
        return await source.fetch(Wanted(url=url))


class DiskWatch:
    """Samples the files under ``work_dir`` every 2 ms (independently of the code under
    test): :attr:`peak` is the most bytes seen at once, :attr:`peak_file` the largest file."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.peak = 0
        self.peak_file = 0

    def _sample(self) -> None:
        sizes = []
        for root, _, names in os.walk(self.work_dir):  # skips folders removed meanwhile
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    sizes.append(os.stat(os.path.join(root, name)).st_size)
        self.peak = max(self.peak, sum(sizes))
        self.peak_file = max(self.peak_file, *sizes, 0)

    async def run(self, work: Coroutine[Any, Any, Any]) -> Any:
        task = asyncio.ensure_future(work)
        while not task.done():
            self._sample()
            await asyncio.sleep(0.002)
        return task.result()


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


async def group_dies(pgid: int, *, within_s: float = 1.0) -> bool:
    """Whether the group empties in time: a SIGKILLed grandchild (ffmpeg) may take a moment
    to be scheduled and die, unlike the child itself, which has been reaped already."""
    deadline = time.monotonic() + within_s
    while group_members(pgid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def reaped(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def first_child(source: YtDlpSource, task: asyncio.Task[Any]) -> tuple[int, set[int]]:
    """The pid of the source's child once it runs, and every process seen in its group."""
    while not source.running_pids:
        assert not task.done(), "the fetch ended before its child was seen"
        await asyncio.sleep(0.01)
    pid = next(iter(source.running_pids))
    seen: set[int] = set()
    wanted = 2 if shutil.which("ffmpeg") else 1  # with ffmpeg: until yt-dlp has started it
    while len(seen) < wanted and not task.done():
        seen.update(group_members(pid))
        await asyncio.sleep(0.01)
    return pid, seen


# --- the byte cap -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/endless.mp3", "/huge.mp3"])
async def test_http_client_cuts_an_oversized_body_at_the_cap(files: FakeFiles, path: str) -> None:
    async with HttpClient(allowed_networks=PUBLIC, retries=0, timeout_s=3.0) as http:
        start = time.monotonic()
        with pytest.raises(DownloadTooLargeError, match=str(CAP)):
            await http.download(f"{files.base}{path}", max_bytes=CAP)
    assert time.monotonic() - start < 1.0
    assert files.sent[path] < 8_000_000  # socket buffers at most, not an endless body


@pytest.mark.parametrize("path", ["/endless.mp3", "/huge.mp3"])
@pytest.mark.parametrize("section_s", [pytest.param(30.0, marks=needs_ffmpeg), None],
                         ids=["ffmpeg-section", "whole-file"])
async def test_ytdlp_cuts_an_oversized_body_at_the_cap(
        files: FakeFiles, tmp_path: Path, path: str, section_s: float | None) -> None:
    source = ytdlp(tmp_path, section_s=section_s)
    disk = DiskWatch(tmp_path)
    start = time.monotonic()
    with pytest.raises(DownloadTooLargeError):
        await disk.run(fetch(source, f"{files.base}{path}"))
    assert time.monotonic() - start < 4.0  # cut, not timed out
    assert disk.peak_file <= CAP
    assert disk.peak <= CAP + 4096  # and the child's small result file
    assert files.sent[path] < 8_000_000
    assert not list(tmp_path.iterdir())  # the child's folder is gone


async def test_ytdlp_network_budget_stops_an_endless_web_page(files: FakeFiles,
                                                              tmp_path: Path) -> None:
    # The generic extractor reads a whole HTML page into memory: only the proxy can stop it.
    source = ytdlp(tmp_path, max_network_bytes=1_000_000)
    start = time.monotonic()
    with pytest.raises(DownloadTooLargeError, match="received more than the 1000000 bytes"):
        await fetch(source, f"{files.base}/endless.html")
    assert time.monotonic() - start < 4.0
    assert files.sent["/endless.html"] < 1_000_000 + 8_000_000


async def test_proxy_cuts_every_connection_past_its_budget(files: FakeFiles) -> None:
    async with GuardedProxy(max_bytes=50_000, allow_private=True) as proxy:
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(f"GET {files.base}/endless.mp3 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = 0
        while chunk := await asyncio.wait_for(reader.read(65536), 2.0):
            received += len(chunk)
        writer.close()
    assert proxy.over_budget and proxy.tripped.is_set()
    assert received <= 50_000


# --- the time limit ---------------------------------------------------------------------


async def test_http_client_gives_up_on_a_dripping_server(files: FakeFiles) -> None:
    async with HttpClient(allowed_networks=PUBLIC, retries=0, timeout_s=1.0) as http:
        start = time.monotonic()
        with pytest.raises(SourceUnavailableError, match=r"within 1 s"):
            await http.download(f"{files.base}/drip.mp3", max_bytes=CAP)
    assert time.monotonic() - start < 1.5


async def test_ytdlp_gives_up_on_a_dripping_server_and_kills_its_processes(
        files: FakeFiles, tmp_path: Path) -> None:
    source = ytdlp(tmp_path, deadline_s=2.0)
    start = time.monotonic()
    task = asyncio.ensure_future(source.fetch(Wanted(url=f"{files.base}/drip.mp3")))
    pid, seen = await first_child(source, task)
    with pytest.raises(SourceUnavailableError, match="gave up after 2 s"):
        await task
    assert time.monotonic() - start < 3.5
    assert pid in seen
    if shutil.which("ffmpeg"):
        assert len(seen) >= 2  # yt-dlp had started ffmpeg
    assert reaped(pid)
    assert await group_dies(pid)  # its ffmpeg too
    assert source.running_pids == frozenset()


async def test_a_cancelled_fetch_kills_the_child(files: FakeFiles, tmp_path: Path) -> None:
    source = ytdlp(tmp_path, deadline_s=30.0)
    task = asyncio.ensure_future(source.fetch(Wanted(url=f"{files.base}/drip.mp3")))
    pid, _ = await first_child(source, task)
    task.cancel()
    start = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - start < 1.0
    assert reaped(pid)
    assert await group_dies(pid)
    assert not list(tmp_path.iterdir())


# --- the private-network guard on every hop and connection -------------------------------


async def test_http_client_refuses_a_redirect_to_a_private_host(
        files: FakeFiles, private: FakeFiles) -> None:
    async with HttpClient(allowed_networks=PUBLIC, retries=0) as http:
        with pytest.raises(UnsafeURLError, match=r"127\.0\.0\.2"):
            await http.download(f"{files.base}/redirect?to={private.base}/audio.mp3",
                                max_bytes=CAP)
    assert files.hits["/redirect"] == 1
    assert sum(private.hits.values()) == 0


async def test_ytdlp_refuses_a_redirect_to_a_private_host(
        files: FakeFiles, private: FakeFiles, tmp_path: Path) -> None:
    source = ytdlp(tmp_path)
    with pytest.raises(UnsafeURLError, match=r"127\.0\.0\.2"):
        await fetch(source, f"{files.base}/redirect?to={private.base}/audio.mp3")
    assert files.hits["/redirect"] == 1
    assert sum(private.hits.values()) == 0


def _rebinding_dns(monkeypatch: pytest.MonkeyPatch, host: str,
                   answers: list[str]) -> list[str]:
    """The running loop resolves ``host`` to ``answers`` in turn (the last one forever)."""
    loop = asyncio.get_running_loop()
    original = loop.getaddrinfo
    given: list[str] = []

    async def getaddrinfo(name: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if name != host:
            return await original(name, port, *args, **kwargs)
        ip = answers[min(len(given), len(answers) - 1)]
        given.append(ip)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port or 80))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return given


@needs_ffmpeg
async def test_ytdlp_connects_to_the_address_it_checked(
        monkeypatch: pytest.MonkeyPatch, files: FakeFiles, private: FakeFiles,
        tmp_path: Path) -> None:
    # rebind.test is public for the first check and the page request, then turns private
    # (same port on 127.0.0.2). The media request that follows is checked again and refused;
    # nothing ever reaches the private host, and nobody but the guard resolves the name.
    given = _rebinding_dns(monkeypatch, "rebind.test", ["127.0.0.1", "127.0.0.1", "127.0.0.2"])
    source = ytdlp(tmp_path, max_bytes=10**6)
    with pytest.raises(UnsafeURLError, match=r"127\.0\.0\.2"):
        await fetch(source, f"http://rebind.test:{files.port}/long.mp3")
    assert given == ["127.0.0.1", "127.0.0.1", "127.0.0.2"]
    assert files.hits["/long.mp3"] == 1
    assert sum(private.hits.values()) == 0


async def test_http_client_connects_to_the_address_it_checked(
        monkeypatch: pytest.MonkeyPatch, files: FakeFiles, private: FakeFiles) -> None:
    # Checked by check_url, then by the connector's resolver, whose answer aiohttp connects
    # to: a third lookup (which would say 127.0.0.2) never happens.
    given = _rebinding_dns(monkeypatch, "rebind.test", ["127.0.0.1", "127.0.0.1", "127.0.0.2"])
    async with HttpClient(allowed_networks=PUBLIC, retries=0) as http:
        data = await http.download(f"http://rebind.test:{files.port}/audio.mp3", max_bytes=CAP)
    assert data == files.audio
    assert given == ["127.0.0.1", "127.0.0.1"]
    assert sum(private.hits.values()) == 0


async def test_proxy_tunnels_only_to_checked_addresses(files: FakeFiles,
                                                       private: FakeFiles) -> None:
    async with GuardedProxy(max_bytes=10**6, allowed_networks=parse_networks(PUBLIC)) as proxy:
        for target, status in ((f"127.0.0.1:{files.port}", b"200"),
                               (f"127.0.0.2:{private.port}", b"403"),
                               (f"[::ffff:127.0.0.2]:{private.port}", b"403")):
            reader, writer = await asyncio.open_connection(*proxy.address)
            writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            assert (await reader.readline()).split()[1] == status
            writer.close()
    assert len(proxy.refusals) == 2
    assert sum(private.hits.values()) == 0


async def test_ytdlp_child_can_reach_nothing_but_the_proxy() -> None:
    # Even if yt-dlp ignored its proxy setting, the child's sockets refuse other addresses.
    probe = textwrap.dedent(f"""
        import runpy, socket
        child = runpy.run_path({str(CHILD_SCRIPT)!r})
        child["_confine_sockets"](("127.0.0.1", 9))
        try:
            socket.create_connection(("127.0.0.1", 10), timeout=1)
        except ConnectionRefusedError as exc:
            print("confined" in str(exc))
    """)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-I", "-c", probe,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert out.decode().strip() == "True"


class SelfSignedYtDlp(YtDlpSource):
    def options(self, folder: Path, proxy_url: str) -> dict[str, Any]:
        return {**super().options(folder, proxy_url), "nocheckcertificate": True}


async def test_https_goes_through_the_proxy_tunnel(files: FakeFiles, tmp_path: Path) -> None:
    # The same fake over TLS: yt-dlp (and ffmpeg, when installed) reach it with CONNECT.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(Path(__file__).parent / "fakes" / "localhost-tls.pem")
    runner = web.AppRunner(files.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        port = runner.addresses[0][1]
        source = SelfSignedYtDlp(allowed_networks=PUBLIC, timeout_s=3.0, deadline_s=4.0,
                                 work_dir=tmp_path)
        fetched = await fetch(source, f"https://127.0.0.1:{port}/long.mp3")
    finally:
        await runner.cleanup()
    assert fetched.ext == "mp3"
    assert files.hits["/long.mp3"] == 2  # the page request and the media request


async def test_allow_private_still_opts_out(files: FakeFiles, private: FakeFiles,
                                            tmp_path: Path) -> None:
    source = ytdlp(tmp_path, allowed_networks=(), allow_private=True, max_bytes=10**6)
    fetched = await fetch(source, f"{files.base}/redirect?to={private.base}/long.mp3")
    assert fetched.ext == "mp3"
    assert private.hits["/long.mp3"] >= 1


# --- identity and credentials -----------------------------------------------------------


def _config(tmp_path: Path, **changes: Any) -> ResolverConfig:
    options: dict[str, Any] = dict(audio_cache_dir=tmp_path / "cache", allowed_networks=PUBLIC,
                                   http_timeout_s=2.0, http_retries=0, ytdlp_deadline_s=4.0)
    options.update(changes)
    cache = options.pop("audio_cache_dir")
    local = bool(options.pop("allow_local_files", False))
    return ResolverConfig(SourceSettings(_env_file=None, **options), cache, local)


async def test_urls_differing_in_their_query_are_different_tracks(files: FakeFiles,
                                                                  tmp_path: Path) -> None:
    async with PreviewResolver(_config(tmp_path)) as resolver:
        ids = [(await resolver.resolve(f"{files.base}/audio.mp3{query}")).track.provider_id
               for query in ("?v=1", "?v=2", "?token=AAAA1111", "?token=BBBB2222", "")]
    assert len(set(ids)) == 5
    assert ids[0].endswith("/audio.mp3?v=1")
    assert not any("AAAA1111" in i or "BBBB2222" in i for i in ids)


def test_url_identity_and_ytdlp_identity() -> None:
    assert url_identity("HTTP://user:pw@Files.Test:80/a.mp3?b=2&a=1#frag") == \
        "http://files.test/a.mp3?b=2&a=1"
    assert url_identity("https://x.test/a?sig=ONE") != url_identity("https://x.test/a?sig=TWO")
    generic = {"id": "a", "title": "a", "extractor_key": "Generic"}
    one = track_info_from_ytdlp(generic, url="http://x.test/a.mp3?v=1")
    two = track_info_from_ytdlp(generic, url="http://x.test/a.mp3?v=2")
    assert one.provider_id != two.provider_id
    youtube = {"id": "dQw4w9WgXcQ", "title": "t", "extractor_key": "Youtube",
               "webpage_url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ"}
    assert track_info_from_ytdlp(youtube, url="https://youtu.be/dQw4w9WgXcQ?t=5"
                                 ).provider_id == "dQw4w9WgXcQ"


@pytest.mark.parametrize(("url", "expected"), [
    ("https://user:pw@cdn.test:8443/a/b.mp3?hdnea=exp~hmac=SIG#t",
     "https://cdn.test:8443/a/b.mp3?hdnea=REDACTED"),
    ("https://x.test/p?v=abc&token=T0K&api_key=K3Y&Signature=S1G&X-Amz-Credential=C&sig=s",
     "https://x.test/p?v=abc&token=REDACTED&api_key=REDACTED&Signature=REDACTED"
     "&X-Amz-Credential=REDACTED&sig=REDACTED"),
    ("https://x.test/watch?v=dQw4w9WgXcQ&list=PL1", "https://x.test/watch?v=dQw4w9WgXcQ&list=PL1"),
    ("https://x.test/p?access_token=eyJhbGciOi.x.y&next=a", "https://x.test/p?access_token=REDACTED&next=a"),
    ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ("not a url at all", "not%20a%20url%20at%20all"),
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_urls_with_known_secrets() -> None:
    url = "http://alice:hunter22@h.test/page?token=TOPSECRET"
    text = f"[generic] page?token=TOPSECRET: failed at {url} for alice:hunter22"
    clean = redact_urls(text, secrets=url_secrets(url))
    assert "TOPSECRET" not in clean and "hunter22" not in clean
    assert "http://h.test/page?token=REDACTED" in clean


@pytest.mark.parametrize("path", ["/html", "/nothing-here", "/redirect"])
async def test_credentials_never_show_in_errors_or_logs(
        files: FakeFiles, private: FakeFiles, tmp_path: Path, path: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.sources")
    secrets = ("hunter2pw", "SECRETTOKEN", "APIKEY123", "SIGVALUE9")
    extra = f"&to={private.base}/a.mp3" if path == "/redirect" else ""
    url = (f"http://alice:hunter2pw@127.0.0.1:{files.port}{path}"
           f"?token=SECRETTOKEN&api_key=APIKEY123&sig=SIGVALUE9{extra}")
    async with PreviewResolver(_config(tmp_path)) as resolver:
        with pytest.raises(SourceError) as info:
            await resolver.resolve(url)
    if path == "/html":  # the page went to yt-dlp too
        assert isinstance(info.value, NoPreviewError) and "ytdlp" in info.value.reasons
    text = str(info.value) + caplog.text
    assert not [s for s in secrets if s in text], text
