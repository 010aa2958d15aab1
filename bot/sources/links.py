"""Track ids in Spotify and Deezer links, without the sources' clients.

:func:`~bot.sources.resolver.classify_query` reads every query with these; keeping them out of
:mod:`bot.sources.spotify` and :mod:`bot.sources.deezer` spares a local file the import of
spotipy and aiohttp.
"""

from __future__ import annotations

import re

#: A Spotify track id: 22 base-62 characters.
SPOTIFY_ID = r"[0-9A-Za-z]{22}"
_SPOTIFY_URI_RE = re.compile(rf"^spotify:track:(?P<id>{SPOTIFY_ID})$")
_SPOTIFY_URL_RE = re.compile(
    rf"^(?:https?://)?open\.spotify\.com/(?:intl-[\w-]+/)?(?:embed/)?track/(?P<id>{SPOTIFY_ID})"
    r"(?:[/?#].*)?$")
_DEEZER_URL_RE = re.compile(
    r"^(?:https?://)?(?:www\.)?deezer\.com/(?:[a-z]{2}(?:-[a-z]{2})?/)?track/(?P<id>\d+)"
    r"(?:[/?#].*)?$", re.IGNORECASE)


def parse_spotify_track_id(text: str) -> str | None:
    """The track id in a Spotify track URL or URI.

    Parameters
    ----------
    text : str
        ``https://open.spotify.com/track/<id>`` (with or without ``intl-xx/`` and a query
        string) or ``spotify:track:<id>``.

    Returns
    -------
    str or None
        The 22-character base-62 id, or None when ``text`` is no Spotify track link.
    """
    text = text.strip()
    match = _SPOTIFY_URI_RE.match(text) or _SPOTIFY_URL_RE.match(text)
    return match.group("id") if match else None


def parse_deezer_track_id(text: str) -> str | None:
    """The track id in a Deezer track URL (``https://www.deezer.com/[xx/]track/<id>``), or None."""
    match = _DEEZER_URL_RE.match(text.strip())
    return match.group("id") if match else None
