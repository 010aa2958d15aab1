"""Deezer's key-free public API: search, track by id or ISRC, and 30-second MP3 previews.

Deezer reports errors inside HTTP 200 answers (``{"error": {"type", "message", "code"}}``);
code 4 is its quota (50 requests per 5 seconds) and is retried like an HTTP 429.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from bot.sources.base import Fetched, Wanted
from bot.sources.errors import (
    RateLimitedError,
    SourceError,
    SourceUnavailableError,
    TrackNotFoundError,
)
from bot.sources.http import HttpClient
from bot.sources.links import parse_deezer_track_id
from bot.sources.matching import clean_title, pick_best
from bot.sources.models import TrackInfo

log = logging.getLogger(__name__)

SOURCE = "deezer"
_ISRC_RE = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}\d{7}$")
_QUOTA = 4
_SERVICE_BUSY = 700
_NOT_FOUND = 800


def track_info_from_deezer(item: dict[str, Any]) -> TrackInfo:
    """Convert a Deezer track object (API JSON) to :class:`TrackInfo`.

    Parameters
    ----------
    item : dict
        A track object from ``/track/{id}``, ``/track/isrc:{ISRC}`` or ``/search``.

    Returns
    -------
    TrackInfo
    """
    duration = item.get("duration")
    return TrackInfo(
        title=str(item.get("title") or item.get("title_short") or ""),
        artist=str((item.get("artist") or {}).get("name") or ""),
        album=(item.get("album") or {}).get("title"),
        duration_s=float(duration) if isinstance(duration, int | float) else None,
        isrc=item.get("isrc") or None,
        provider=SOURCE,
        provider_id=str(item.get("id") or ""),
        url=item.get("link"),
        preview_url=item.get("preview") or None,
    )


class DeezerSource:
    """Metadata and previews from Deezer.

    Parameters
    ----------
    http : HttpClient
        The shared HTTP client (timeouts, retries, URL guard).
    api_base : str
        API base URL.
    max_bytes : int
        Largest preview download in bytes.
    quota_wait_s : float
        Wait before retrying after Deezer's quota error (code 4).
    """

    name = SOURCE

    def __init__(self, http: HttpClient, *, api_base: str = "https://api.deezer.com",
                 max_bytes: int = 15_000_000, quota_wait_s: float = 5.0) -> None:
        self.http = http
        self.api_base = api_base.rstrip("/")
        self.max_bytes = max_bytes
        self.quota_wait_s = quota_wait_s

    def _validate(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise SourceError(SOURCE, "unexpected answer (not a JSON object)")
        error = data.get("error")
        if not error:
            return
        if not isinstance(error, dict):
            raise SourceError(SOURCE, f"error {str(error)[:200]}")
        code, message = error.get("code"), str(error.get("message") or error.get("type"))[:200]
        if code == _QUOTA:
            raise RateLimitedError(SOURCE, f"quota exceeded ({message})",
                                   retry_after=self.quota_wait_s)
        if code == _SERVICE_BUSY:
            raise SourceUnavailableError(SOURCE, f"service busy ({message})")
        if code == _NOT_FOUND:
            raise TrackNotFoundError(SOURCE, f"no data ({message})")
        raise SourceError(SOURCE, f"error {code}: {message}")

    async def _get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = await self.http.get_json(
            f"{self.api_base}/{path}", params=params, source=SOURCE, validate=self._validate)
        return data

    async def search(self, query: str, *, limit: int = 5) -> list[TrackInfo]:
        """Search tracks.

        Parameters
        ----------
        query : str
            Free text, or Deezer's advanced syntax (``artist:"..." track:"..."``).
        limit : int
            Most results returned.

        Returns
        -------
        list of TrackInfo
            Deezer's ranking, best first; empty when nothing matched.

        Raises
        ------
        SourceError
            Rate limits, outages and other failures.
        """
        data = await self._get("search", {"q": query, "limit": str(limit)})
        items = data.get("data") or []
        return [track_info_from_deezer(item) for item in items if isinstance(item, dict)]

    async def find(self, *, artist: str | None, title: str | None,
                   text: str | None = None) -> TrackInfo | None:
        """The search result that is the wanted track (see :func:`pick_best`).

        Parameters
        ----------
        artist, title : str or None
            The wanted track, when known (an advanced search, then a plain one).
        text : str, optional
            Free text, used when artist and title are unknown (first result taken).

        Returns
        -------
        TrackInfo or None
        """
        if artist and title:
            # Quotes would end Deezer's quoted fields early.
            who, what = artist.replace('"', " "), clean_title(title).replace('"', " ")
            for query in (f'artist:"{who}" track:"{what}"', f"{who} {what}"):
                found = pick_best(await self.search(query), artist=artist, title=title)
                if found is not None:
                    return found
            return None
        query = (text or title or artist or "").strip()
        if not query:
            raise ValueError("nothing to search for")
        results = await self.search(query)
        return results[0] if results else None

    async def track(self, deezer_id: str | int) -> TrackInfo:
        """Metadata of one track by Deezer id (or Deezer track URL).

        Raises
        ------
        TrackNotFoundError
            Unknown id.
        """
        track_id = parse_deezer_track_id(str(deezer_id)) or str(deezer_id).strip()
        if not track_id.isdigit():
            raise TrackNotFoundError(SOURCE, f"not a Deezer track id: {str(deezer_id)[:80]!r}")
        return track_info_from_deezer(await self._get(f"track/{track_id}"))

    async def track_by_isrc(self, isrc: str) -> TrackInfo:
        """Metadata of the track with this ISRC.

        Raises
        ------
        TrackNotFoundError
            No track has it, or it is malformed.
        """
        code = isrc.strip().upper().replace("-", "")
        if not _ISRC_RE.match(code):
            raise TrackNotFoundError(SOURCE, f"not an ISRC: {isrc[:40]!r}")
        return track_info_from_deezer(await self._get(f"track/isrc:{code}"))

    async def download_preview(self, track: TrackInfo) -> bytes:
        """Download a Deezer track's 30-second MP3 preview.

        Parameters
        ----------
        track : TrackInfo
            A Deezer track with a ``preview_url``.

        Raises
        ------
        TrackNotFoundError
            The track has no preview.
        SourceError
            The download failed (see :meth:`HttpClient.download`).
        """
        if not track.preview_url:
            raise TrackNotFoundError(SOURCE, f"no preview for {track.display_name}")
        return await self.http.download(track.preview_url, max_bytes=self.max_bytes,
                                        source=SOURCE)

    async def fetch(self, wanted: Wanted) -> Fetched:
        """Find a preview of ``wanted``: the Deezer track itself, by ISRC, or by search.

        Raises
        ------
        TrackNotFoundError
            No matching track, or it has no preview.
        SourceError
            Any other failure.
        """
        found: TrackInfo | None = None
        known = wanted.track
        if known is not None and known.provider == SOURCE and known.preview_url:
            found = known
        elif known is not None and known.isrc:
            try:
                found = await self.track_by_isrc(known.isrc)
            except TrackNotFoundError:
                log.debug("deezer: no track with ISRC %s, searching", known.isrc)
        if found is None:
            found = await self.find(artist=wanted.artist, title=wanted.title, text=wanted.text)
        if found is None:
            raise TrackNotFoundError(SOURCE, f"no match for {wanted.search_text[:100]!r}")
        return Fetched(found, await self.download_preview(found))
