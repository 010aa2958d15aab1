"""The iTunes Search API (no key): song search with 30-second AAC/M4A previews."""

from __future__ import annotations

from typing import Any

from bot.sources.base import Fetched, Wanted
from bot.sources.errors import SourceError, TrackNotFoundError
from bot.sources.http import HttpClient
from bot.sources.matching import pick_best
from bot.sources.models import TrackInfo

SOURCE = "itunes"


def track_info_from_itunes(item: dict[str, Any]) -> TrackInfo:
    """Convert one iTunes Search result to :class:`TrackInfo` (iTunes gives no ISRC).

    Parameters
    ----------
    item : dict
        An element of ``results`` from ``/search?entity=song``.

    Returns
    -------
    TrackInfo
    """
    millis = item.get("trackTimeMillis")
    return TrackInfo(
        title=str(item.get("trackName") or ""),
        artist=str(item.get("artistName") or ""),
        album=item.get("collectionName"),
        duration_s=millis / 1000 if isinstance(millis, int | float) else None,
        isrc=None,
        provider=SOURCE,
        provider_id=str(item.get("trackId") or ""),
        url=item.get("trackViewUrl"),
        preview_url=item.get("previewUrl") or None,
    )


class ItunesSource:
    """Previews from the iTunes Search API.

    Parameters
    ----------
    http : HttpClient
        The shared HTTP client.
    api_base : str
        API base URL.
    max_bytes : int
        Largest preview download in bytes.
    country : str or None
        Store country (two letters) to search; None: the API's default (US).
    """

    name = SOURCE

    def __init__(self, http: HttpClient, *, api_base: str = "https://itunes.apple.com",
                 max_bytes: int = 15_000_000, country: str | None = None) -> None:
        self.http = http
        self.api_base = api_base.rstrip("/")
        self.max_bytes = max_bytes
        self.country = country

    async def search(self, term: str, *, limit: int = 5) -> list[TrackInfo]:
        """Search songs that have a preview.

        Parameters
        ----------
        term : str
            Free text (``"artist title"``).
        limit : int
            Most results asked for.

        Returns
        -------
        list of TrackInfo
            Results with a ``preview_url``, best first.

        Raises
        ------
        SourceError
            Rate limits, outages and other failures.
        """
        params = {"term": term, "media": "music", "entity": "song", "limit": str(limit)}
        if self.country:
            params["country"] = self.country
        data = await self.http.get_json(f"{self.api_base}/search", params=params, source=SOURCE)
        if not isinstance(data, dict):
            raise SourceError(SOURCE, "unexpected answer (not a JSON object)")
        items = data.get("results") or []
        tracks = [track_info_from_itunes(i) for i in items if isinstance(i, dict)]
        return [t for t in tracks if t.preview_url]

    async def fetch(self, wanted: Wanted) -> Fetched:
        """Search ``"artist title"`` (or the user's text) and download the matching preview.

        Raises
        ------
        TrackNotFoundError
            No matching song with a preview.
        SourceError
            Any other failure.
        """
        term = wanted.search_text
        if not term:
            raise TrackNotFoundError(SOURCE, "nothing to search for")
        found = pick_best(await self.search(term), artist=wanted.artist, title=wanted.title)
        if found is None or not found.preview_url:
            raise TrackNotFoundError(SOURCE, f"no match with a preview for {term[:100]!r}")
        data = await self.http.download(found.preview_url, max_bytes=self.max_bytes,
                                        source=SOURCE)
        return Fetched(found, data)
