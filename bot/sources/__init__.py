"""Music sources: track metadata (Spotify, Deezer, iTunes, yt-dlp, local files) and previews.

The entry point is :class:`bot.sources.resolver.PreviewResolver`: ``await
resolver.resolve(query)`` returns a :class:`bot.sources.models.Preview` whose audio file is
ready for :mod:`mer_models`. Importing this package loads nothing: the settings import
:mod:`bot.sources.models` (the provider names) without pulling in yt-dlp or aiohttp.
"""
