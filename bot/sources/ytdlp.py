"""yt-dlp as the last resort: the first 30 seconds of a YouTube (or other site's) track.

yt-dlp is synchronous and slow to give up, so it runs in a worker thread with tight options:
one item (no playlists), only the first ``section_s`` seconds (through ffmpeg, when installed),
a size cap and a socket timeout, into a temporary folder that is removed afterwards.

Every request yt-dlp makes goes through :meth:`YoutubeDL.urlopen`, and every media download
through :meth:`YoutubeDL.dl`; both are checked with the same private-network guard as
:class:`~bot.sources.http.HttpClient` (redirects followed inside yt-dlp's HTTP stack are not
seen hop by hop; that is why a direct audio URL goes to the HTTP client first).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yt_dlp
from yt_dlp.utils import DownloadError, download_range_func

from bot.sources.base import Fetched, Wanted
from bot.sources.errors import (
    DownloadTooLargeError,
    NotAudioError,
    RateLimitedError,
    SourceError,
    SourceUnavailableError,
    TrackNotFoundError,
)
from bot.sources.models import TrackInfo
from bot.sources.sniff import sniff_audio
from bot.sources.urlguard import check_url, check_url_sync, redact_urls

log = logging.getLogger(__name__)

SOURCE = "ytdlp"
_NOT_FOUND_HINTS = ("unsupported url", "video unavailable", "private video", "not available",
                    "no video formats", "requested format is not available", "does not exist",
                    "has been removed", "404")
_UNAVAILABLE_HINTS = ("timed out", "timeout", "connection", "unable to download", "http error 5",
                      "name resolution", "network is unreachable", "temporarily")


class _Logger:
    """Routes yt-dlp's console output to logging, with URLs stripped of their tokens."""

    def debug(self, msg: str) -> None:
        pass  # yt-dlp sends its progress chatter here

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        log.debug("yt-dlp warning: %s", redact_urls(msg))

    def error(self, msg: str) -> None:
        log.debug("yt-dlp error: %s", redact_urls(msg))


class _GuardedYoutubeDL(yt_dlp.YoutubeDL):
    """A YoutubeDL that refuses URLs on private networks unless they are allowed."""

    def __init__(self, params: dict[str, Any], *, allow_private: bool) -> None:
        super().__init__(params)
        self._allow_private = allow_private

    def urlopen(self, req: Any) -> Any:
        url = req if isinstance(req, str) else getattr(req, "url", None) or req.get_full_url()
        check_url_sync(url, allow_private=self._allow_private, source=SOURCE)
        return super().urlopen(req)

    def dl(self, name: str, info: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        # ffmpeg (used for sections) opens media URLs itself, outside urlopen.
        for fmt in info.get("requested_formats") or [info]:
            if fmt.get("url"):
                check_url_sync(fmt["url"], allow_private=self._allow_private, source=SOURCE)
        return super().dl(name, info, *args, **kwargs)


def _translate(exc: DownloadError) -> SourceError:
    inner = exc.exc_info[1] if exc.exc_info else None
    if isinstance(inner, SourceError):
        return inner
    message = redact_urls(str(exc).removeprefix("ERROR: ").splitlines()[0] if str(exc) else "")
    lower = message.lower()
    if "http error 429" in lower or "too many requests" in lower:
        return RateLimitedError(SOURCE, message[:300])
    if any(hint in lower for hint in _NOT_FOUND_HINTS):
        return TrackNotFoundError(SOURCE, message[:300])
    if any(hint in lower for hint in _UNAVAILABLE_HINTS):
        return SourceUnavailableError(SOURCE, message[:300])
    return SourceError(SOURCE, message[:300] or "download failed")


def track_info_from_ytdlp(info: dict[str, Any]) -> TrackInfo:
    """Metadata from a yt-dlp info dict; "Artist - Title" video titles are split.

    Parameters
    ----------
    info : dict
        One entry's info dict.

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
    return TrackInfo(
        title=title,
        artist=artist,
        album=info.get("album"),
        duration_s=float(duration) if isinstance(duration, int | float) else None,
        isrc=None,
        provider=SOURCE,
        provider_id=str(info.get("id") or ""),
        url=info.get("webpage_url"),
        preview_url=None,
    )


class YtDlpSource:
    """Audio excerpts through yt-dlp: a URL of any supported site, or a YouTube search.

    Parameters
    ----------
    max_bytes : int
        Largest accepted file in bytes.
    timeout_s : float
        Socket timeout of yt-dlp's requests in seconds.
    allow_private : bool
        Accept URLs on private and loopback networks.
    section_s : float
        Seconds downloaded from the start of the track (needs ffmpeg; without it the whole
        file is downloaded, within ``max_bytes``).
    overall_timeout_s : float
        Limit for the whole extraction and download; the worker thread cannot be stopped, so
        it finishes in the background after this.
    ffmpeg : str or None
        ffmpeg executable; by default the one on ``PATH``.
    """

    name = SOURCE

    def __init__(self, *, max_bytes: int = 15_000_000, timeout_s: float = 10.0,
                 allow_private: bool = False, section_s: float = 30.0,
                 overall_timeout_s: float = 120.0, ffmpeg: str | None = None) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.section_s = section_s
        self.overall_timeout_s = overall_timeout_s
        self.ffmpeg = ffmpeg or shutil.which("ffmpeg")

    def options(self, folder: Path) -> dict[str, Any]:
        """yt-dlp options for one download into ``folder``."""
        opts: dict[str, Any] = {
            "format": "bestaudio/best",
            "noplaylist": True,
            "playlist_items": "1",
            "max_filesize": self.max_bytes,
            "socket_timeout": self.timeout_s,
            "retries": 1,
            "extractor_retries": 1,
            "fragment_retries": 1,
            "outtmpl": {"default": str(folder / "clip.%(ext)s")},
            "paths": {"home": str(folder), "temp": str(folder)},
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "logger": _Logger(),
            "cachedir": False,
            "overwrites": True,
            "updatetime": False,
            "consoletitle": False,
        }
        if self.ffmpeg:
            opts["ffmpeg_location"] = self.ffmpeg
            opts["download_ranges"] = download_range_func(None, [(0, self.section_s)])
        return opts

    async def fetch(self, wanted: Wanted) -> Fetched:
        """Download the first ``section_s`` seconds of ``wanted.url`` or of the first YouTube
        search result for ``"artist title"``.

        Raises
        ------
        UnsafeURLError
            The URL (or one yt-dlp extracted) is on a private network and that is not allowed.
        TrackNotFoundError
            Unsupported URL, unavailable video, or no search result.
        DownloadTooLargeError
            The file is larger than ``max_bytes``.
        SourceError
            Any other failure.
        """
        if wanted.url:
            await check_url(wanted.url, allow_private=self.allow_private, source=SOURCE)
            target = wanted.url
        elif wanted.search_text:
            target = f"ytsearch1:{wanted.search_text}"
        else:
            raise TrackNotFoundError(SOURCE, "nothing to search for")
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._download, target),
                                          self.overall_timeout_s)
        except TimeoutError as exc:
            raise SourceUnavailableError(
                SOURCE, f"gave up after {self.overall_timeout_s:g} s") from exc

    def _download(self, target: str) -> Fetched:
        with tempfile.TemporaryDirectory(prefix="mer-ytdlp-") as tmp:
            folder = Path(tmp)
            try:
                with _GuardedYoutubeDL(self.options(folder),
                                       allow_private=self.allow_private) as ydl:
                    info = ydl.extract_info(target, download=True)
            except DownloadError as exc:
                raise _translate(exc) from exc
            except SourceError:
                raise  # the URL guard
            except Exception as exc:  # yt-dlp lets odd errors escape (extractor bugs)
                raise SourceError(SOURCE, f"{type(exc).__name__}: "
                                          f"{redact_urls(str(exc))[:300]}") from exc
            if info and (info.get("_type") == "playlist" or "entries" in info):
                entries = [e for e in info.get("entries") or [] if e]
                info = entries[0] if entries else None
            if not info:
                raise TrackNotFoundError(SOURCE, "no result")
            files = [p for p in folder.iterdir()
                     if p.is_file() and not p.name.endswith((".part", ".ytdl", ".temp"))]
            if not files:
                size = info.get("filesize") or info.get("filesize_approx")
                if size and size > self.max_bytes:
                    raise DownloadTooLargeError(
                        SOURCE, f"{size} bytes, more than the {self.max_bytes} allowed")
                raise SourceError(SOURCE, "yt-dlp wrote no file")
            path = max(files, key=lambda p: p.stat().st_size)
            if path.stat().st_size > self.max_bytes:
                raise DownloadTooLargeError(SOURCE, f"{path.stat().st_size} bytes, more than "
                                                    f"the {self.max_bytes} allowed")
            data = path.read_bytes()
        ext = sniff_audio(data[:12])
        if ext is None:
            raise NotAudioError(SOURCE, "the downloaded file is not a known audio format")
        return Fetched(track_info_from_ytdlp(info), data, ext)
