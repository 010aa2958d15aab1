"""yt-dlp as the last resort: the first 30 seconds of a YouTube (or other site's) track.

yt-dlp is synchronous, follows redirects itself, resolves names itself and cannot be stopped
from another thread, so it never runs in this process. Each fetch starts a child process
(:mod:`bot.sources._ytdlp_child`) that the event loop only watches and can kill at any time:

Network confinement
    A :class:`~bot.sources.proxy.GuardedProxy` runs in this process on 127.0.0.1 for the
    fetch, and yt-dlp gets it as its proxy (and hands it to ffmpeg through ``http_proxy``).
    The proxy resolves every requested host once, refuses private and reserved addresses
    (unless allowed) and connects to the address it checked, so every redirect hop and every
    connection is checked and a DNS answer cannot change after the check. The child's Python
    sockets may connect to the proxy and nowhere else, should yt-dlp ever bypass its proxy
    setting; ffmpeg, a separate program, is kept to http(s) inputs by a protocol whitelist.
    (Handing yt-dlp only media URLs that :class:`~bot.sources.http.HttpClient` resolved would
    not do: extraction itself fetches pages, scripts and APIs, and follows their redirects.)
Size
    yt-dlp's ``max_filesize`` skips files announced too large; ``RLIMIT_FSIZE`` in the child
    stops any file from growing past the cap (the kernel refuses the write); the parent polls
    the child's folder and kills it when everything in it together passes the cap; and the
    proxy cuts all traffic past a byte budget, so an endless web page cannot fill memory.
Time
    A socket timeout for each read (yt-dlp's ``socket_timeout``, ffmpeg's ``-rw_timeout``),
    and an overall deadline after which the whole process group (yt-dlp and its ffmpeg) is
    killed: a server dripping one byte a second gets no further. A cancelled fetch kills the
    group too. At most ``max_processes`` children run at once.

Only one item is fetched (no playlists), and only its first ``section_s`` seconds when ffmpeg
is installed. Everything the child writes lives in a temporary folder removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.sources.base import Fetched, Wanted
from bot.sources.errors import (
    DownloadTooLargeError,
    NotAudioError,
    RateLimitedError,
    SourceError,
    SourceUnavailableError,
    TrackNotFoundError,
    UnsafeURLError,
)
from bot.sources.models import TrackInfo
from bot.sources.proxy import GuardedProxy
from bot.sources.sniff import sniff_audio
from bot.sources.urlguard import (
    check_url,
    parse_networks,
    redact_url,
    redact_urls,
    url_identity,
    url_secrets,
)

log = logging.getLogger(__name__)

SOURCE = "ytdlp"
CHILD_SCRIPT = Path(__file__).with_name("_ytdlp_child.py")
_NOT_FOUND_HINTS = ("unsupported url", "video unavailable", "private video", "not available",
                    "no video formats", "requested format is not available", "does not exist",
                    "has been removed", "404")
_UNAVAILABLE_HINTS = ("timed out", "timeout", "connection", "unable to download", "http error 5",
                      "name resolution", "network is unreachable", "temporarily")
_TOO_LARGE_HINTS = ("file too large", "errno 27", "max-filesize")
_PARTIAL_SUFFIXES = (".part", ".ytdl", ".temp", ".tmp")
# Environment variables the child keeps: enough to find programs and certificates.
_CHILD_ENV = ("PATH", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")


def _translate(message: str) -> SourceError:
    message = message.removeprefix("ERROR: ").strip().splitlines()[0] if message.strip() else ""
    lower = message.lower()
    if "http error 429" in lower or "too many requests" in lower:
        return RateLimitedError(SOURCE, message[:300])
    if any(hint in lower for hint in _NOT_FOUND_HINTS):
        return TrackNotFoundError(SOURCE, message[:300])
    if any(hint in lower for hint in _UNAVAILABLE_HINTS):
        return SourceUnavailableError(SOURCE, message[:300])
    return SourceError(SOURCE, message[:300] or "download failed")


def track_info_from_ytdlp(info: dict[str, Any], *, url: str | None = None) -> TrackInfo:
    """Metadata from a yt-dlp info dict; "Artist - Title" video titles are split.

    Parameters
    ----------
    info : dict
        One entry's info dict.
    url : str, optional
        The URL yt-dlp was given. For the generic extractor (a plain web page or file) it is
        the track's identity (:func:`~bot.sources.urlguard.url_identity`, query string kept):
        the id yt-dlp makes up from the file name would give two URLs one identity.

    Returns
    -------
    TrackInfo
    """
    title = str(info.get("track") or info.get("title") or info.get("id") or "")
    artist = str(info.get("artist") or info.get("creator") or "")
    if not artist:
        if not info.get("track") and " - " in title:
            artist, title = (part.strip() for part in title.split(" - ", 1))
        else:
            artist = str(info.get("uploader") or info.get("channel") or "")
            artist = artist.removesuffix(" - Topic")
    duration = info.get("duration")
    provider_id = str(info.get("id") or "")
    page = info.get("webpage_url")
    if str(info.get("extractor_key") or "").lower() == "generic" and (url or page):
        provider_id = url_identity(url or str(page))
        page = redact_url(url or str(page))
    return TrackInfo(
        title=title,
        artist=artist,
        album=info.get("album"),
        duration_s=float(duration) if isinstance(duration, int | float) else None,
        isrc=None,
        provider=SOURCE,
        provider_id=provider_id,
        url=page,
        preview_url=None,
    )


@dataclass
class _Run:
    """What one child did, as seen from the parent."""

    outcome: str = "exited"  # "exited", "deadline", "too_large", "refused"
    peak_bytes: int = 0
    seconds: float = 0.0


def _folder_bytes(folder: Path) -> int:
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            with contextlib.suppress(FileNotFoundError):
                if entry.is_dir(follow_symlinks=False):
                    total += _folder_bytes(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=False).st_size
    return total


class YtDlpSource:
    """Audio excerpts through yt-dlp: a URL of any supported site, or a YouTube search.

    Parameters
    ----------
    max_bytes : int
        Largest accepted file in bytes; nothing the child writes grows past it.
    timeout_s : float
        Socket timeout of yt-dlp's requests (and of the proxy's connects) in seconds.
    allow_private : bool
        Accept URLs on private and loopback networks.
    allowed_networks : iterable of str
        Non-public networks (CIDR) accepted even when ``allow_private`` is False.
    section_s : float or None
        Seconds downloaded from the start of the track (needs ffmpeg; without it, or with
        None, the whole file is downloaded, within ``max_bytes``).
    deadline_s : float
        Limit for the whole extraction and download; the child is killed after it.
    max_network_bytes : int, optional
        Bytes the child may receive in all (pages, scripts, media); by default
        ``2 * max_bytes + 8 MB``.
    max_processes : int
        Children running at once; further fetches wait for a free slot.
    ffmpeg : str or None
        ffmpeg executable; by default the one on ``PATH``.
    work_dir : Path, optional
        Where the children's temporary folders go (default: the system's).
    """

    name = SOURCE

    def __init__(self, *, max_bytes: int = 15_000_000, timeout_s: float = 10.0,
                 allow_private: bool = False, allowed_networks: Iterable[str] = (),
                 section_s: float | None = 30.0, deadline_s: float = 60.0,
                 max_network_bytes: int | None = None, max_processes: int = 2,
                 ffmpeg: str | None = None, work_dir: Path | None = None) -> None:
        if max_bytes <= 0 or deadline_s <= 0 or timeout_s <= 0 or max_processes < 1:
            raise ValueError("max_bytes, timeout_s, deadline_s and max_processes must be "
                             "positive")
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.allowed_networks = parse_networks(allowed_networks)
        self.section_s = section_s
        self.deadline_s = deadline_s
        self.max_network_bytes = max_network_bytes or 2 * max_bytes + 8_000_000
        self.ffmpeg = ffmpeg or shutil.which("ffmpeg")
        self.work_dir = work_dir
        self.poll_s = 0.05
        self._slots = asyncio.Semaphore(max_processes)
        self._children: dict[int, asyncio.subprocess.Process] = {}

    @property
    def running_pids(self) -> frozenset[int]:
        """Process ids of the children running now (each leads its own process group)."""
        return frozenset(self._children)

    def options(self, folder: Path, proxy_url: str) -> dict[str, Any]:
        """yt-dlp options (JSON) for one download into ``folder`` through ``proxy_url``."""
        opts: dict[str, Any] = {
            "format": "bestaudio/best",
            "noplaylist": True,
            "playlist_items": "1",
            "max_filesize": self.max_bytes,
            "socket_timeout": self.timeout_s,
            "proxy": proxy_url,
            "geo_verification_proxy": proxy_url,
            "retries": 1,
            "extractor_retries": 1,
            "fragment_retries": 1,
            "outtmpl": {"default": "clip.%(ext)s"},
            "paths": {"home": str(folder), "temp": str(folder)},
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "cachedir": False,
            "overwrites": True,
            "updatetime": False,
            "consoletitle": False,
        }
        if self.ffmpeg:
            opts["ffmpeg_location"] = self.ffmpeg
            # httpproxy and tcp carry http(s) to the proxy; no file:, rtmp:, udp: inputs.
            # ffmpeg has no socket timeout of its own otherwise (microseconds).
            opts["external_downloader_args"] = {"ffmpeg_i": [
                "-protocol_whitelist", "http,https,tcp,tls,crypto,httpproxy",
                "-rw_timeout", str(int(self.timeout_s * 1_000_000))]}
        return opts

    async def fetch(self, wanted: Wanted) -> Fetched:
        """Download the first ``section_s`` seconds of ``wanted.url`` or of the first YouTube
        search result for ``"artist title"``.

        Raises
        ------
        UnsafeURLError
            The URL, a redirect or any request yt-dlp made is on a private network and that
            is not allowed.
        TrackNotFoundError
            Unsupported URL, unavailable video, or no search result.
        DownloadTooLargeError
            The file, or all yt-dlp received, is larger than allowed.
        SourceUnavailableError
            The deadline passed (the child was killed), or the site is down.
        SourceError
            Any other failure.
        """
        if wanted.url:
            await check_url(wanted.url, allow_private=self.allow_private,
                            allowed_networks=self.allowed_networks, source=SOURCE)
            target = wanted.url
        elif wanted.search_text:
            target = f"ytsearch1:{wanted.search_text}"
        else:
            raise TrackNotFoundError(SOURCE, "nothing to search for")
        async with self._slots:
            folder = Path(tempfile.mkdtemp(prefix="mer-ytdlp-", dir=self.work_dir))
            try:
                return await self._fetch_in(folder, target, wanted.url)
            finally:
                await asyncio.to_thread(shutil.rmtree, folder, True)

    async def _fetch_in(self, folder: Path, target: str, url: str | None) -> Fetched:
        secrets = url_secrets(url) if url else ()
        out, result_path = folder / "out", folder / "result.json"
        out.mkdir()
        async with GuardedProxy(max_bytes=self.max_network_bytes,
                                allow_private=self.allow_private,
                                allowed_networks=self.allowed_networks,
                                connect_timeout_s=self.timeout_s, source=SOURCE) as proxy:
            host, port = proxy.address
            job = {"target": target, "options": self.options(out, proxy.url),
                   "section_s": self.section_s if self.ffmpeg else None,
                   "proxy_host": host, "proxy_port": port,
                   "max_file_bytes": self.max_bytes, "result": str(result_path)}
            run = await self._run_child(job, out, proxy)
        log.debug("%s: child ended (%s) after %.2f s; %d bytes received, peak %d on disk",
                  SOURCE, run.outcome, run.seconds, proxy.bytes_relayed, run.peak_bytes)
        if proxy.refusals:
            raise UnsafeURLError(SOURCE, redact_urls(proxy.refusals[0].reason, secrets=secrets))
        if run.outcome == "deadline":
            raise SourceUnavailableError(SOURCE, f"gave up after {self.deadline_s:g} s")
        if proxy.over_budget:
            raise DownloadTooLargeError(SOURCE, f"received more than the "
                                                f"{self.max_network_bytes} bytes allowed")
        if run.outcome == "too_large":
            raise DownloadTooLargeError(SOURCE, f"wrote more than the {self.max_bytes} bytes "
                                                "allowed")
        return await asyncio.to_thread(self._collect, out, result_path, url, secrets)

    async def _run_child(self, job: dict[str, Any], out: Path, proxy: GuardedProxy) -> _Run:
        env = {k: os.environ[k] for k in _CHILD_ENV if k in os.environ}
        env.update(HOME=str(out), TMPDIR=str(out))  # stray temp files count against the cap
        started = time.monotonic()
        run = _Run()
        # A session of its own: killing the group takes ffmpeg along. The job goes through
        # stdin, not argv, which any local user can read in /proc.
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", str(CHILD_SCRIPT), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                cwd=out, env=env, start_new_session=True)
        except OSError as exc:
            raise SourceUnavailableError(SOURCE, f"cannot start yt-dlp: {exc}") from exc
        self._children[proc.pid] = proc
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(job).encode())
            with contextlib.suppress(OSError):
                await proc.stdin.drain()
            proc.stdin.close()
            run.outcome = await self._watch(proc, out, proxy, run, started + self.deadline_s)
        finally:
            # Also on cancellation: nothing may outlive the request that started it.
            self._kill(proc)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(proc.wait())
            self._children.pop(proc.pid, None)
            run.seconds = time.monotonic() - started
        return run

    async def _watch(self, proc: asyncio.subprocess.Process, out: Path,
                     proxy: GuardedProxy, run: _Run, deadline: float) -> str:
        exited = asyncio.ensure_future(proc.wait())
        tripped = asyncio.ensure_future(proxy.tripped.wait())
        try:
            while True:
                await asyncio.wait({exited, tripped}, timeout=self.poll_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                # RLIMIT_FSIZE caps each file; this caps all of them together (fragments,
                # stray temporary files). Measured before deciding: a file may have grown.
                run.peak_bytes = max(run.peak_bytes, _folder_bytes(out))
                if run.peak_bytes > self.max_bytes:
                    return "too_large"
                if tripped.done():
                    return "refused" if proxy.refusals else "too_large"
                if exited.done():
                    return "exited"
                if time.monotonic() >= deadline:
                    return "deadline"
        finally:
            for waiter in (exited, tripped):
                waiter.cancel()

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        # The group outlives its leader while ffmpeg runs, so this also reaches an orphan.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def _collect(self, out: Path, result_path: Path, url: str | None,
                 secrets: tuple[str, ...]) -> Fetched:
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = {"ok": False, "error": "the yt-dlp process died"}
        for message in result.get("messages", []):
            log.debug("yt-dlp: %s", redact_urls(str(message), secrets=secrets))
        files = [p for p in out.iterdir()
                 if p.is_file() and not p.name.endswith(_PARTIAL_SUFFIXES)]
        biggest = max((p.stat().st_size for p in out.iterdir() if p.is_file()), default=0)
        error = redact_urls(str(result.get("error") or ""), secrets=secrets)
        # A failure with a file at the cap: the kernel refused to let it grow (EFBIG, or
        # ffmpeg killed by SIGXFSZ).
        hit_cap = not result.get("ok") and biggest >= self.max_bytes
        if result.get("too_large") or hit_cap or \
                any(hint in error.lower() for hint in _TOO_LARGE_HINTS):
            raise DownloadTooLargeError(SOURCE, f"the file is larger than the "
                                                f"{self.max_bytes} bytes allowed")
        if not result.get("ok"):
            if result.get("not_found"):
                raise TrackNotFoundError(SOURCE, "no result")
            raise _translate(error)
        if not files:
            raise SourceError(SOURCE, "yt-dlp wrote no file")
        data = max(files, key=lambda p: p.stat().st_size).read_bytes()
        ext = sniff_audio(data[:12])
        if ext is None:
            raise NotAudioError(SOURCE, "the downloaded file is not a known audio format")
        return Fetched(track_info_from_ytdlp(result.get("info") or {}, url=url), data, ext)
