"""Errors of the music sources: one root, :class:`SourceError`, and one subclass per failure kind.

Every message names the source (``"deezer"``, ``"spotify"``, ``"http"``, ...) and the reason, and
never carries a full URL with its query string (preview URLs hold signed tokens).
"""

from __future__ import annotations


class SourceError(Exception):
    """Root of every error raised by :mod:`bot.sources`.

    Parameters
    ----------
    source : str
        The source that failed (``"spotify"``, ``"deezer"``, ``"itunes"``, ``"ytdlp"``,
        ``"local"``, ``"http"``, ``"resolver"``).
    reason : str
        What went wrong, for people.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class TrackNotFoundError(SourceError):
    """The source has no such track, or no preview for it."""


class RateLimitedError(SourceError):
    """The source refused the request for now (HTTP 429 or a quota error).

    Parameters
    ----------
    source : str
        The source that refused.
    reason : str
        What went wrong.
    retry_after : float or None
        Seconds the source asked us to wait, when it said.
    """

    def __init__(self, source: str, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(source, reason)
        self.retry_after = retry_after


class SourceUnavailableError(SourceError):
    """The source is down or unreachable: HTTP 5xx, a timeout or a connection error."""


class UnsafeURLError(SourceError):
    """A URL that must not be fetched: not http(s), or a host on a private/reserved network.

    Raised before any connection is made, also for every redirect hop.
    """


class DownloadTooLargeError(SourceError):
    """A download is larger than the configured cap; it was abandoned."""


class NotAudioError(SourceError):
    """The content is not audio (an HTML page, JSON, unknown bytes) or arrived truncated."""


class AudioCacheError(SourceError):
    """The audio cache could not store a download (disk full, no permission).

    Nothing partial is left in the cache and the files already there are untouched.
    """


class NoPreviewError(TrackNotFoundError):
    """Every preview source failed for a track.

    Parameters
    ----------
    source : str
        ``"resolver"``.
    reason : str
        What was looked for.
    reasons : dict
        Each source tried (in order) mapped to why it failed.
    """

    def __init__(self, source: str, reason: str, *, reasons: dict[str, str]) -> None:
        detail = "; ".join(f"{name}: {why}" for name, why in reasons.items()) or "no source tried"
        super().__init__(source, f"{reason} ({detail})")
        self.reasons = dict(reasons)
