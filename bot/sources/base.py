"""What the resolver asks a preview source for, what it gets back, and the source protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.sources.matching import clean_title
from bot.sources.models import TrackInfo


@dataclass(frozen=True)
class Wanted:
    """The track a preview is wanted for, as much as is known about it.

    Attributes
    ----------
    track : TrackInfo or None
        Metadata found earlier (Spotify, Deezer), if any.
    text : str or None
        The user's search text, when there is no better description.
    url : str or None
        A page or media URL to hand to yt-dlp.
    """

    track: TrackInfo | None = None
    text: str | None = None
    url: str | None = None

    @property
    def artist(self) -> str | None:
        """The artist, when known."""
        return self.track.artist or None if self.track else None

    @property
    def title(self) -> str | None:
        """The title, when known."""
        return self.track.title or None if self.track else None

    @property
    def search_text(self) -> str:
        """``"artist title"`` (title without "(Remastered)" and such) when known, else the
        user's text."""
        if self.track is not None:
            return f"{self.track.artist} {clean_title(self.track.title)}".strip()
        return (self.text or "").strip()


@dataclass(frozen=True)
class Fetched:
    """Audio bytes from one source, with that source's view of the track.

    Attributes
    ----------
    track : TrackInfo
        Metadata from the source that served the audio.
    data : bytes
        The audio file's content.
    ext : str or None
        File extension (without dot), when the source knows it.
    """

    track: TrackInfo
    data: bytes
    ext: str | None = None


class PreviewSource(Protocol):
    """A source of preview audio (Deezer, iTunes, yt-dlp)."""

    #: Name used in settings (``source_order``), logs and :attr:`Preview.provider`.
    name: str

    async def fetch(self, wanted: Wanted) -> Fetched:
        """Find and download a preview of ``wanted``; raise a :class:`SourceError` if none."""
        ...
