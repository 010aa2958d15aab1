"""The child process of :mod:`bot.sources.ytdlp`: one yt-dlp extraction and download, confined.

Run as ``python -I _ytdlp_child.py`` with a JSON job on stdin; it writes its outcome as JSON to
the job's ``result`` path and exits. It imports nothing from ``bot`` (a fast start, no settings,
no secrets), and before yt-dlp runs it

- caps the size of every file it or ffmpeg writes (``RLIMIT_FSIZE``: the kernel refuses to
  grow a file past ``max_file_bytes``; ffmpeg is killed by ``SIGXFSZ``, Python gets ``EFBIG``);
- lets its sockets connect to the parent's proxy only, so every request yt-dlp makes goes
  through the proxy's private-network check, whatever yt-dlp's own proxy handling does.

ffmpeg is a separate program: yt-dlp hands it the proxy through ``http_proxy``, and the job's
``-protocol_whitelist`` keeps it on http(s) (no ``file:``, ``tcp:``, ``rtmp:`` inputs).
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import sys
from pathlib import Path
from typing import Any

#: Format protocols whose every request is plain http(s) through the proxy.
_HTTP_PROTOCOLS = frozenset({"http", "https", "m3u8", "m3u8_native", "http_dash_segments",
                             "http_dash_segments_generator"})
_INFO_KEYS = ("id", "title", "track", "artist", "creator", "uploader", "channel", "album",
              "duration", "webpage_url", "extractor_key", "filesize", "filesize_approx")


def _limit_file_size(max_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXFSZ would otherwise dump core


def _small_buffer(sock: socket.socket) -> None:
    # A response yt-dlp leaves unread (it keeps the page open while ffmpeg fetches the media)
    # then fills 256 kB, not the megabytes of an autotuned window, of the proxy's budget.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)


def _confine_sockets(proxy: tuple[str, int]) -> None:
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address: Any) -> None:
        if not (isinstance(address, tuple) and (address[0], address[1]) == proxy):
            raise ConnectionRefusedError(f"confined: only the proxy may be reached, not "
                                         f"{address!r}")

    def guarded_connect(self: socket.socket, address: Any) -> None:
        check(address)
        _small_buffer(self)
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        _small_buffer(self)
        return connect_ex(self, address)

    setattr(socket.socket, "connect", guarded_connect)  # noqa: B010 (typeshed's signature)
    setattr(socket.socket, "connect_ex", guarded_connect_ex)  # noqa: B010


class _Logger:
    """Keeps yt-dlp's messages for the parent (which redacts them) and notes size refusals."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.too_large = False

    def _keep(self, msg: str) -> None:
        if "max-filesize" in msg or "max_filesize" in msg:
            self.too_large = True
        if len(self.messages) < 50:
            self.messages.append(msg[:500])

    def debug(self, msg: str) -> None:
        if not msg.startswith("[debug] "):
            self._keep(msg)

    def info(self, msg: str) -> None:
        self._keep(msg)

    def warning(self, msg: str) -> None:
        self._keep(msg)

    def error(self, msg: str) -> None:
        self._keep(msg)


def _run(job: dict[str, Any], logger: _Logger) -> dict[str, Any]:
    import yt_dlp
    from yt_dlp.utils import DownloadError, download_range_func

    class ConfinedYoutubeDL(yt_dlp.YoutubeDL):
        def dl(self, name: str, info: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            # ffmpeg opens media URLs itself: only http(s) ones, which honour http_proxy.
            for fmt in info.get("requested_formats") or [info]:
                url, protocol = str(fmt.get("url") or ""), fmt.get("protocol") or "http"
                if not url.startswith(("http://", "https://")) or protocol not in _HTTP_PROTOCOLS:
                    raise DownloadError(f"refused a {protocol} media URL: only http(s) is "
                                        "fetched")
            return super().dl(name, info, *args, **kwargs)

    opts = dict(job["options"])
    opts["logger"] = logger
    if job.get("section_s"):
        opts["download_ranges"] = download_range_func(None, [(0, job["section_s"])])
    try:
        with ConfinedYoutubeDL(opts) as ydl:
            info = ydl.extract_info(job["target"], download=True)
    except DownloadError as exc:
        return {"ok": False, "error": str(exc), "too_large": logger.too_large}
    if info and (info.get("_type") == "playlist" or "entries" in info):
        entries = [e for e in info.get("entries") or [] if e]
        info = entries[0] if entries else None
    if not info:
        return {"ok": False, "error": "no result", "not_found": True}
    return {"ok": True, "too_large": logger.too_large,
            "info": {k: info.get(k) for k in _INFO_KEYS if isinstance(info.get(k), str | int |
                                                                       float)}}


def main() -> None:
    job = json.loads(sys.stdin.read())
    _limit_file_size(int(job["max_file_bytes"]))
    _confine_sockets((job["proxy_host"], int(job["proxy_port"])))
    logger = _Logger()
    try:
        result = _run(job, logger)
    except Exception as exc:  # yt-dlp lets odd errors escape (extractor bugs)
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                  "too_large": logger.too_large}
    result["messages"] = logger.messages
    Path(job["result"]).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
