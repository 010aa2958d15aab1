"""Value objects of the music sources: a track's metadata and a preview file ready to analyse."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final


class Provider(StrEnum):
    """Where a track's metadata or audio came from: the one list of provider names.

    The values are stored in the database (``track_sources.provider``) as they are.
    """

    SPOTIFY = "spotify"
    DEEZER = "deezer"
    ITUNES = "itunes"
    YTDLP = "ytdlp"
    #: A plain http(s) URL of an audio file or page.
    URL = "url"
    LOCAL = "local"


#: Providers that can serve a preview, in the default order tried.
PREVIEW_PROVIDERS: Final[tuple[Provider, ...]] = (Provider.DEEZER, Provider.ITUNES,
                                                  Provider.YTDLP)


@dataclass(frozen=True, kw_only=True)
class TrackInfo:
    """Metadata of one track, as one provider describes it.

    Attributes
    ----------
    title : str
        Track title.
    artist : str
        Main artist (the first one when the provider lists several).
    album : str or None
        Album title.
    duration_s : float or None
        Length of the full track in seconds (not of the preview).
    isrc : str or None
        International Standard Recording Code, used to find the same recording elsewhere.
    provider : Provider
        Who gave this metadata.
    provider_id : str
        The track's identifier at that provider (a file path for ``"local"``).
    url : str or None
        Public page of the track at that provider.
    preview_url : str or None
        Direct URL of a short audio preview, when the provider has one (often signed and
        short-lived: never log it).
    spotify_features : dict or None
        Spotify's audio features (danceability, energy, valence, tempo, ...) when the Spotify
        app still has access to them.
    """

    title: str
    artist: str
    album: str | None = None
    duration_s: float | None = None
    isrc: str | None = None
    provider: str
    provider_id: str
    url: str | None = None
    preview_url: str | None = None
    spotify_features: dict[str, Any] | None = None

    @property
    def display_name(self) -> str:
        """``"Artist - Title"``, or the title alone when the artist is unknown."""
        return f"{self.artist} - {self.title}" if self.artist else self.title


@dataclass(frozen=True)
class Preview:
    """A playable excerpt of a track, stored on disk.

    Attributes
    ----------
    track : TrackInfo
        The best metadata known for the track (Spotify's or Deezer's when they were asked).
    path : Path
        The audio file: an entry of the audio cache, or the user's own file for local input.
    provider : Provider
        Who served the audio.
    sha256 : str
        Hex SHA-256 of the file's bytes.
    """

    track: TrackInfo
    path: Path
    provider: str
    sha256: str
