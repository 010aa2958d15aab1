"""Music sources: track metadata (Spotify, Deezer, iTunes, yt-dlp, local files) and previews.

The entry point is :class:`PreviewResolver`: ``await resolver.resolve(query)`` returns a
:class:`Preview` whose audio file is ready for :mod:`mer_models`.
"""

from bot.sources.audio_cache import AudioCache, CachedAudio
from bot.sources.errors import (
    DownloadTooLargeError,
    NoPreviewError,
    NotAudioError,
    RateLimitedError,
    SourceError,
    SourceUnavailableError,
    TrackNotFoundError,
    UnsafeURLError,
)
from bot.sources.http import HttpClient
from bot.sources.models import Preview, TrackInfo
from bot.sources.resolver import PreviewResolver, Query, QueryKind, ResolverConfig, classify_query

__all__ = [
    "AudioCache",
    "CachedAudio",
    "DownloadTooLargeError",
    "HttpClient",
    "NoPreviewError",
    "NotAudioError",
    "Preview",
    "PreviewResolver",
    "Query",
    "QueryKind",
    "RateLimitedError",
    "ResolverConfig",
    "SourceError",
    "SourceUnavailableError",
    "TrackInfo",
    "TrackNotFoundError",
    "UnsafeURLError",
    "classify_query",
]
