"""bot.sources.http: retries, timeouts, the private-network guard and capped audio downloads.

Everything runs over real HTTP against :class:`FakeFiles` on 127.0.0.1; a socket guard refuses
(and records) any connection that is not loopback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

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
from bot.sources.retry import backoff_delay, parse_retry_after
from bot.sources.sniff import sniff_audio
from bot.sources.urlguard import is_public_address, redact_url, redact_urls
from tests.fakes.guards import LoopbackGuard, install_loopback_guard
from tests.fakes.servers import FakeFiles


@pytest.fixture(autouse=True)
def guard(monkeypatch: pytest.MonkeyPatch) -> LoopbackGuard:
    return install_loopback_guard(monkeypatch)


@pytest.fixture
async def files() -> AsyncIterator[FakeFiles]:
    async with FakeFiles() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    async with HttpClient(allow_private=True, timeout_s=2.0, retries=2, backoff_base_s=0.01,
                          max_retry_after_s=5.0) as client:
        yield client


def _patch_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Make the running loop resolve the given names to the given addresses, in turn."""
    loop = asyncio.get_running_loop()
    original = loop.getaddrinfo
    asked: list[str] = []

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            asked.append(host)
            ip = answers[host][min(len(asked) - 1, len(answers[host]) - 1)]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port or 80))]
        return await original(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return asked


# --- success paths --------------------------------------------------------------------------


async def test_download_returns_the_audio(files: FakeFiles, http: HttpClient) -> None:
    assert await http.download(f"{files.base}/audio.mp3", max_bytes=10**6) == files.audio


async def test_get_json_with_params(files: FakeFiles, http: HttpClient) -> None:
    assert await http.get_json(f"{files.base}/json", params={"q": "x y"}) == {"ok": True, "n": 1}


async def test_five_redirects_are_followed_six_are_not(files: FakeFiles,
                                                       http: HttpClient) -> None:
    assert await http.download(f"{files.base}/hops/5", max_bytes=10**6) == files.audio
    with pytest.raises(SourceError, match="more than 5 redirects"):
        await http.download(f"{files.base}/hops/6", max_bytes=10**6)


# --- retries --------------------------------------------------------------------------------


async def test_429_waits_as_long_as_retry_after_says(files: FakeFiles, http: HttpClient) -> None:
    files.fail("/json", 429, headers={"Retry-After": "1"})
    start = time.monotonic()
    assert (await http.get_json(f"{files.base}/json"))["ok"] is True
    assert time.monotonic() - start >= 0.95
    assert files.hits["/json"] == 2


async def test_429_on_every_try_raises_rate_limited(files: FakeFiles, http: HttpClient) -> None:
    files.fail("/json", 429, times=None, headers={"Retry-After": "0"})
    with pytest.raises(RateLimitedError, match="after 3 tries") as info:
        await http.get_json(f"{files.base}/json")
    assert info.value.retry_after == 0
    assert files.hits["/json"] == 3


async def test_retry_after_beyond_the_cap_fails_at_once(files: FakeFiles,
                                                        http: HttpClient) -> None:
    files.fail("/json", 429, times=None, headers={"Retry-After": "3600"})
    start = time.monotonic()
    with pytest.raises(RateLimitedError, match="more than the 5 s allowed") as info:
        await http.get_json(f"{files.base}/json")
    assert info.value.retry_after == 3600
    assert time.monotonic() - start < 0.5
    assert files.hits["/json"] == 1


async def test_a_500_is_retried(files: FakeFiles, http: HttpClient) -> None:
    files.fail("/audio.mp3", 503)
    assert await http.download(f"{files.base}/audio.mp3", max_bytes=10**6) == files.audio
    assert files.hits["/audio.mp3"] == 2


async def test_persistent_500_raises_unavailable(files: FakeFiles, http: HttpClient) -> None:
    files.fail("/json", 500, times=None)
    with pytest.raises(SourceUnavailableError, match=r"HTTP 500 .*after 3 tries"):
        await http.get_json(f"{files.base}/json")
    assert files.hits["/json"] == 3


async def test_timeout_raises_unavailable(files: FakeFiles) -> None:
    files.slow_s = 0.5
    async with HttpClient(allow_private=True, timeout_s=0.1, retries=1,
                          backoff_base_s=0.01) as client:
        start = time.monotonic()
        with pytest.raises(SourceUnavailableError, match=r"within 0\.1 s"):
            await client.download(f"{files.base}/slow", max_bytes=10**6)
    assert time.monotonic() - start < 0.45
    assert files.hits["/slow"] == 2


async def test_connection_refused_raises_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    async with HttpClient(allow_private=True, retries=0) as client:
        with pytest.raises(SourceUnavailableError, match="connection"):
            await client.get_json(f"http://127.0.0.1:{port}/x")


async def test_404_is_not_found(files: FakeFiles, http: HttpClient) -> None:
    with pytest.raises(TrackNotFoundError, match="404"):
        await http.get_json(f"{files.base}/nothing-here")
    assert files.hits["/nothing-here"] == 1  # not retried


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff_delay(n, base_s=0.5, cap_s=3.0) for n in range(6)]
    assert 0.25 <= delays[0] <= 0.5
    assert 1.0 <= delays[2] <= 2.0
    assert all(1.5 <= d <= 3.0 for d in delays[3:])


@pytest.mark.parametrize(("header", "expected"), [
    ("2", 2.0), (" 0 ", 0.0), ("-5", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("soon", None), ("nan", None), ("inf", None), (None, None),
])
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


# --- download checks ------------------------------------------------------------------------


async def test_truncated_body_is_not_audio(files: FakeFiles, http: HttpClient) -> None:
    with pytest.raises(NotAudioError, match="ended early"):
        await http.download(f"{files.base}/truncated", max_bytes=10**6)


@pytest.mark.parametrize(("path", "reason"), [
    ("/html", "text/html"), ("/json", "application/json"), ("/fake-audio", "not a known audio"),
])
async def test_non_audio_is_refused(files: FakeFiles, http: HttpClient, path: str,
                                    reason: str) -> None:
    with pytest.raises(NotAudioError, match=reason):
        await http.download(f"{files.base}{path}", max_bytes=10**6)


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
async def test_download_over_the_cap(files: FakeFiles, http: HttpClient, path: str) -> None:
    with pytest.raises(DownloadTooLargeError, match="100000"):
        await http.download(f"{files.base}{path}", max_bytes=100_000)


@pytest.mark.parametrize(("head", "ext"), [
    (b"ID3\x04\x00\x00\x00\x00\x00\x00\x00\x00", "mp3"), (b"\xff\xfb\x90\x00" + bytes(8), "mp3"),
    (b"\xff\xf1\x50\x80" + bytes(8), "aac"), (b"RIFF\x00\x00\x00\x00WAVE", "wav"),
    (b"fLaC" + bytes(8), "flac"), (b"OggS" + bytes(8), "ogg"),
    (b"\x00\x00\x00\x20ftypM4A ", "m4a"), (b"\x1aE\xdf\xa3" + bytes(8), "webm"),
    (b"FORM\x00\x00\x00\x00AIFF", "aiff"), (b"<!doctype htm", None), (b'{"a": 1}', None),
    (b"", None),
])
def test_sniff_audio(head: bytes, ext: str | None) -> None:
    assert sniff_audio(head) == ext


# --- the private-network guard --------------------------------------------------------------


@pytest.mark.parametrize("target", [
    "http://10.0.0.1/preview.mp3",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[::ffff:10.0.0.1]/x.mp3",
    "http://0.0.0.0:22/",
    "file:///etc/passwd",
])
async def test_redirect_to_a_private_address_is_refused_without_connecting(
        files: FakeFiles, guard: LoopbackGuard, target: str) -> None:
    # Only the fake's own address is trusted, so the redirect target is judged for real.
    async with HttpClient(allowed_networks=["127.0.0.1/32"], retries=0) as client:
        with pytest.raises(UnsafeURLError):
            await client.download(f"{files.base}/redirect?to={target}", max_bytes=10**6)
    assert files.hits["/redirect"] == 1
    assert guard.refused == []
    assert set(guard.attempts) == {"127.0.0.1"}


async def test_loopback_is_refused_unless_allowed(files: FakeFiles, guard: LoopbackGuard) -> None:
    async with HttpClient() as client:  # allow_private=False, as in production
        with pytest.raises(UnsafeURLError, match="non-public address"):
            await client.download(f"{files.base}/audio.mp3", max_bytes=10**6)
        with pytest.raises(UnsafeURLError):
            await client.get_json(f"http://localhost:{files.base.rsplit(':', 1)[1]}/json")
    assert guard.attempts == []
    assert sum(files.hits.values()) == 0


async def test_a_name_resolving_to_a_private_address_is_refused(
        monkeypatch: pytest.MonkeyPatch, guard: LoopbackGuard) -> None:
    asked = _patch_dns(monkeypatch, {"metadata.test": ["169.254.169.254"]})
    async with HttpClient() as client:
        with pytest.raises(UnsafeURLError, match=r"169\.254\.169\.254"):
            await client.get_json("http://metadata.test/latest/meta-data/")
    assert asked == ["metadata.test"]
    assert guard.attempts == []


async def test_dns_rebinding_is_caught_when_connecting(
        monkeypatch: pytest.MonkeyPatch, files: FakeFiles, guard: LoopbackGuard) -> None:
    # The check sees a public address; the connection's own lookup then gets loopback.
    port = files.base.rsplit(":", 1)[1]
    asked = _patch_dns(monkeypatch, {"rebind.test": ["93.184.216.34", "127.0.0.1"]})
    async with HttpClient(retries=0) as client:
        with pytest.raises(UnsafeURLError, match=r"127\.0\.0\.1"):
            await client.download(f"http://rebind.test:{port}/audio.mp3", max_bytes=10**6)
    assert asked == ["rebind.test", "rebind.test"]
    assert guard.attempts == []


@pytest.mark.parametrize("url", ["ftp://example.com/a.mp3", "file:///etc/passwd",
                                 "gopher://example.com/", "javascript:alert(1)", "/relative"])
async def test_other_schemes_are_refused(url: str, guard: LoopbackGuard) -> None:
    async with HttpClient(allow_private=True) as client:
        with pytest.raises(UnsafeURLError):
            await client.download(url, max_bytes=10)
    assert guard.attempts == []


@pytest.mark.parametrize(("address", "public"), [
    ("93.184.216.34", True), ("2606:4700:4700::1111", True),
    ("10.0.0.1", False), ("172.16.5.4", False), ("192.168.1.1", False), ("127.0.0.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("224.0.0.1", False),
    ("0.0.0.0", False), ("240.0.0.1", False), ("255.255.255.255", False), ("::1", False),
    ("fe80::1%eth0", False), ("fc00::1", False), ("::ffff:127.0.0.1", False),
    ("2002:a00:1::1", False), ("ff02::1", False), ("not-an-ip", False),
])
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(address) is public


# --- no secrets in logs or messages ---------------------------------------------------------


def test_redact_url_drops_credentials_secret_values_and_fragment() -> None:
    assert redact_url("https://user:pw@cdn.test:8443/a/b.mp3?hdnea=exp~hmac=SIG#t") == \
        "https://cdn.test:8443/a/b.mp3?hdnea=REDACTED"
    assert redact_urls("failed: https://x.test/p?token=SECRET and more") == \
        "failed: https://x.test/p?token=REDACTED and more"


async def test_signed_urls_stay_out_of_errors_and_logs(
        files: FakeFiles, http: HttpClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.sources")
    files.fail("/html", 500)
    with pytest.raises(NotAudioError) as info:
        await http.download(f"{files.base}/html?hdnea=exp=1~hmac=SECRETSIG", max_bytes=10**6)
    assert "SECRETSIG" not in str(info.value)
    assert "retrying" in caplog.text
    assert "SECRETSIG" not in caplog.text
