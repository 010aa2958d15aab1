"""The music-player front-end (MPD); it calls only the service.

:mod:`bot.player.mpd` adapts an MPD server to the service's
:class:`~bot.service.player.Player` protocol (queue, add, stickers, idle events, reconnection).
"""
