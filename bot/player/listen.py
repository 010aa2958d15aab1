"""``mer listen``: follow an MPD server with the service's :class:`~bot.service.listening.Listener`.

``mer listen`` (in :mod:`bot.cli.listen`) runs this front-end as ``python -m bot.player listen``
in a child process, since front-ends never import each other. It connects to MPD, creates the
service, and runs the listener; in every mode it writes each classified track's mood,
valence and arousal as MPD stickers, so any MPD client can search by mood
(``sticker find song "" mood = calm``). What happens is drawn as a one-line live status in a
terminal, and as plain lines otherwise; problems always get a line of their own on stderr.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bot.player.mpd import MpdPlayer
from bot.service.listening import (
    ListenConfig,
    Listener,
    ListenEvent,
    mood_stickers,
)
from bot.settings import PlayerSettings

if TYPE_CHECKING:
    from bot.service.mood import TrackMood
    from bot.service.player import QueuedTrack
    from bot.settings import Settings

_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:]+))(?::(?P<port>\d+))?$")


def parse_mpd(value: str, default_port: int = 6600) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``[IPv6]:PORT`` or a Unix socket path -> (host, port).

    Parameters
    ----------
    value : str
        What ``--mpd`` was given.
    default_port : int
        The port when none is given (and for a socket, where it is unused).

    Returns
    -------
    tuple of (str, int)
        The host (or socket path) and the port.

    Raises
    ------
    ValueError
        An empty value or a port outside 1..65535.
    """
    value = value.strip()
    if not value:
        raise ValueError("--mpd needs HOST:PORT or the path of MPD's Unix socket")
    if value.startswith(("/", "@", "~")):
        return str(Path(value).expanduser()) if value.startswith("~") else value, default_port
    match = _HOST_PORT.match(value)
    if match is None:  # a bare IPv6 address
        return value, default_port
    host = match["v6"] or match["host"]
    port = int(match["port"]) if match["port"] else default_port
    if not 1 <= port <= 65535:
        raise ValueError(f"--mpd {value!r}: the port must be 1 to 65535")
    return host, port


def player_settings(base: PlayerSettings, mpd: str | None,
                    music_root: Path | None) -> PlayerSettings:
    """``base`` with the command line's ``--mpd`` and ``--music-root`` applied.

    Raises
    ------
    ValueError
        A bad ``--mpd`` value.
    """
    update: dict[str, object] = {}
    if mpd is not None:
        update["mpd_host"], update["mpd_port"] = parse_mpd(mpd, base.mpd_port)
    if music_root is not None:
        update["mpd_music_root"] = music_root.expanduser()
    return base.model_copy(update=update)


@dataclass
class StatusLine:
    """Renders :class:`~bot.service.listening.ListenEvent` values on a terminal or a pipe.

    In a terminal one status line is redrawn in place (now playing and its mood, the last
    thing classified or added); events worth keeping (added, suggested, problems) are printed
    above it. Elsewhere each event is one plain line.

    Parameters
    ----------
    out : TextIO
        Where the status goes (standard output).
    err : TextIO
        Where problems go (standard error).
    live : bool or None
        Draw a live line (None: when ``out`` is a terminal).
    """

    out: TextIO
    err: TextIO
    live: bool | None = None
    _playing: str = ""
    _last: str = ""
    _drawn: bool = False

    def __post_init__(self) -> None:
        if self.live is None:
            self.live = bool(getattr(self.out, "isatty", lambda: False)())

    def __call__(self, event: ListenEvent) -> None:
        """Show one event."""
        if not self.live:
            stream = self.err if event.kind == "problem" else self.out
            stream.write(f"{event.kind}: {event.message}\n")
            stream.flush()
            return
        if event.kind == "playing":
            self._playing = event.message
        elif event.kind in ("classified", "annotated"):
            self._last = event.message
        else:
            self._clear()
            stream = self.err if event.kind == "problem" else self.out
            stream.write(("problem: " if event.kind == "problem" else "")
                         + event.message + "\n")
            stream.flush()
            if event.kind == "added":
                self._last = event.message
        self._draw()

    def close(self) -> None:
        """End the live line, so what follows starts on a line of its own."""
        if self.live and self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False

    def _clear(self) -> None:
        if self._drawn:
            self.out.write("\r\x1b[K")
            self._drawn = False

    def _draw(self) -> None:
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        text = " | ".join(part for part in (self._playing or "waiting for a track",
                                            self._last) if part)
        if len(text) > width:
            text = text[: width - 1] + "…"
        self.out.write("\r\x1b[K" + text)
        self.out.flush()
        self._drawn = True


async def listen(settings: Settings, config: ListenConfig, *, status: StatusLine,
                 workers: int = 1) -> None:
    """Follow MPD (``settings.player``) until cancelled: the body of ``mer listen``.

    Parameters
    ----------
    settings : Settings
        Application settings; ``settings.player`` names the daemon and the music root.
    config : ListenConfig
        The listener's mode and numbers.
    status : StatusLine
        Where events are drawn.
    workers : int
        Classification processes (1: a thread of this process).

    Raises
    ------
    ServiceError
        The service cannot start, or MPD cannot be reached or refused the password
        (:class:`~bot.service.player.PlayerError`, a ServiceError).
    """
    from bot.service import MoodService
    from bot.service.heap import freeze_long_lived

    service = await MoodService.create(settings, allow_local_files=True, workers=workers)
    async with service, MpdPlayer(settings.player) as player:
        async def stickers(track: QueuedTrack, mood: TrackMood) -> None:
            await player.set_stickers(track.uri, mood_stickers(mood))

        # A long-running process: keep full garbage collections off the start-up heap.
        freeze_long_lived()
        status(ListenEvent("info", f"listening to {player.scope} ({config.mode}); "
                                   "Ctrl-C stops"))
        listener = Listener(player, service, config, report=status, annotate=stickers)
        await listener.run()
