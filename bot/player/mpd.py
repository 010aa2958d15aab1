"""MPD as a :class:`~bot.service.player.Player`: an adapter over python-mpd2's asyncio client.

:class:`MpdPlayer` connects to the daemon named by :class:`~bot.settings.PlayerSettings`
(``MER_MPD_HOST`` — a host name, an address or a Unix socket path —, ``MER_MPD_PORT``,
``MER_MPD_PASSWORD``), reads the current track and the queue, adds tracks right after the current
one or at the end, reads and writes stickers, and follows MPD's ``idle`` events (``player``,
``playlist``, ``database``). When the daemon goes away it reconnects in the background, waiting
5 s, 10 s, 60 s and then 300 s between tries; the outage is logged once when it starts and once
when it ends, each try only at debug level.

Song URIs are paths relative to MPD's music directory. MPD reveals that folder only to clients on
its Unix socket, so the adapter reads it from ``MER_MPD_MUSIC_ROOT`` (or asks MPD over a socket
when that is unset) and maps URIs to local files (:func:`uri_to_path`) and local files to URIs
(:func:`path_to_uri`). Those two look at the file system, so the adapter runs them in a worker
thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from mpd.asyncio import MPDClient
from mpd.base import CommandError, MPDError

from bot.service.player import (
    SUBSYSTEMS,
    NoLocalFile,
    OutsideMusicRoot,
    Player,
    PlayerError,
    PlayerUnavailable,
    QueuedTrack,
    local_pick,
)
from bot.settings import PlayerSettings

if TYPE_CHECKING:
    from bot.service.recommendations import Pick

logger = logging.getLogger(__name__)

#: Waits between reconnection tries, in seconds; the last one repeats.
DEFAULT_BACKOFF_S: tuple[float, ...] = (5.0, 10.0, 60.0, 300.0)

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ACK = re.compile(r"^\[(?P<code>\d+)@\d+\]\s*(\{[^}]*\}\s*)?(?P<text>.*)$", re.S)
# MPD's ACK codes (src/protocol/Ack.hxx).
_ACK_PASSWORD, _ACK_PERMISSION, _ACK_NO_CURRENT_SONG = 3, 4, 55


class _Client(MPDClient):
    """python-mpd2's asyncio client, without its noise when a connection drops during idle.

    python-mpd2 3.1 re-raises the lost connection from a future's done-callback, which asyncio
    logs as an error with a traceback on every outage; the idle consumers hear of it anyway.
    """

    def _MPDClient__idle_result(self, result: asyncio.Future[Any]) -> None:
        if result.cancelled():
            return
        error = result.exception()
        if error is not None and not isinstance(error, CommandError):
            return
        super()._MPDClient__idle_result(result)


def backoff_delays(schedule: Sequence[float] = DEFAULT_BACKOFF_S) -> Iterator[float]:
    """The waits before each reconnection try: ``schedule``, then its last value forever.

    Parameters
    ----------
    schedule : sequence of float
        Seconds to wait before the first, second, ... try.

    Yields
    ------
    float
        Seconds to wait before the next try.
    """
    yield from schedule
    while True:
        yield schedule[-1]


def uri_to_path(music_root: Path | None, uri: str) -> Path:
    """The local file of an MPD song URI (this reads the file system: keep it off the loop).

    Parameters
    ----------
    music_root : Path or None
        MPD's music directory on this machine.
    uri : str
        The song URI: relative to the music directory, or an absolute path (songs that local
        clients queue from outside the library).

    Returns
    -------
    Path
        The file, resolved (symbolic links followed).

    Raises
    ------
    NoLocalFile
        The URI is a stream or URL, the music root is unset, or no file lies there.
    """
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    elif _URL.match(uri):
        raise NoLocalFile(uri, f"song {uri!r} is a stream or URL, not a file of the library")
    if os.path.isabs(uri):
        candidate = Path(os.path.normpath(uri))
    elif music_root is None:
        raise NoLocalFile(uri, f"cannot find the file of song {uri!r}: the music root is not "
                               "set (MER_MPD_MUSIC_ROOT, MPD's music_directory on this machine)")
    else:
        root = Path(os.path.abspath(music_root))
        candidate = Path(os.path.normpath(root / uri))
        if not candidate.is_relative_to(root):
            raise NoLocalFile(uri, f"song {uri!r} points outside the music root {str(root)!r}")
    if not candidate.is_file():
        where = ("" if os.path.isabs(uri) or music_root is None
                 else f" under the music root {str(music_root)!r} (is MER_MPD_MUSIC_ROOT "
                      "MPD's music_directory?)")
        raise NoLocalFile(uri, f"song {uri!r} has no file{where}")
    return candidate.resolve()


def path_to_uri(music_root: Path | None, path: Path) -> str:
    """The MPD song URI of a local file (this reads the file system: keep it off the loop).

    Parameters
    ----------
    music_root : Path or None
        MPD's music directory on this machine.
    path : Path
        A file under it (symbolic links in the path are allowed).

    Returns
    -------
    str
        The path relative to the music root, with ``/`` separators.

    Raises
    ------
    OutsideMusicRoot
        The file lies outside the music root, so MPD cannot play it from its library.
    PlayerError
        The music root is unset, or the file does not exist.
    """
    if music_root is None:
        raise PlayerError(f"cannot queue {str(path)!r}: the music root is not set "
                          "(MER_MPD_MUSIC_ROOT, MPD's music_directory on this machine)")
    path = path.expanduser()
    attempts = ((Path(os.path.abspath(path)), Path(os.path.abspath(music_root))),
                (path.resolve(), music_root.resolve()))
    for candidate, root in attempts:
        if candidate.is_relative_to(root) and candidate != root:
            if not candidate.is_file():
                raise PlayerError(f"cannot queue {str(path)!r}: no such file")
            return candidate.relative_to(root).as_posix()
    raise OutsideMusicRoot(path, f"cannot queue {str(path)!r}: it is outside MPD's music root "
                                 f"{str(music_root)!r}, so MPD cannot play it")


class MpdPlayer:
    """An MPD server, followed and steered; implements :class:`~bot.service.player.Player`.

    Use it as ``async with MpdPlayer(settings.player) as player:`` (or call :meth:`connect`
    and :meth:`aclose`). While the daemon is away, commands raise
    :class:`~bot.service.player.PlayerUnavailable` and :meth:`events` waits; the adapter
    reconnects on its own and then reports every subsystem as changed.

    Parameters
    ----------
    settings : PlayerSettings
        Host (or Unix socket path), port, password and music root.
    backoff_s : sequence of float
        Waits between reconnection tries, in seconds; the last one repeats.
    command_timeout_s : float
        Longest wait for one connection attempt or one command, in seconds.
    keepalive_s : float or None
        Ping the daemon this often, in seconds, to notice a connection that died silently
        (a host that vanished without closing it); None: never.
    """

    def __init__(self, settings: PlayerSettings, *,
                 backoff_s: Sequence[float] = DEFAULT_BACKOFF_S,
                 command_timeout_s: float = 10.0, keepalive_s: float | None = 30.0) -> None:
        if not backoff_s or any(delay < 0 for delay in backoff_s):
            raise ValueError("backoff_s needs at least one wait, none negative")
        if command_timeout_s <= 0 or (keepalive_s is not None and keepalive_s <= 0):
            raise ValueError("command_timeout_s and keepalive_s must be positive")
        self._host = settings.mpd_host
        self._port = settings.mpd_port
        self._password = settings.mpd_password
        self._music_root = settings.mpd_music_root
        self._backoff = tuple(backoff_s)
        self._timeout = command_timeout_s
        self._keepalive_s = keepalive_s
        self._client: _Client | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._subscribers: set[_Subscription] = set()
        self._connecting = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<MpdPlayer {self.scope} {'connected' if self.connected else 'disconnected'}>"

    # --- state ---------------------------------------------------------------------------

    @property
    def scope(self) -> str:
        """``mpd:HOST:PORT`` or ``mpd:SOCKET``: where the music is heard (no password)."""
        if self._unix:
            return f"mpd:{self._host}"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"mpd:{host}:{self._port}"

    @property
    def connected(self) -> bool:
        """Whether the daemon is connected now."""
        return self._client is not None and bool(self._client.connected)

    @property
    def music_root(self) -> Path | None:
        """MPD's music directory on this machine: the setting, else what MPD told a socket
        client, else None (then no song URI maps to a file)."""
        return self._music_root

    @property
    def _unix(self) -> bool:
        return self._host.startswith(("/", "@"))

    # --- life cycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def connect(self, *, wait: bool = False) -> None:
        """Connect, then follow the daemon (and reconnect to it) in the background.

        Parameters
        ----------
        wait : bool
            When the daemon cannot be reached, keep trying with the backoff instead of
            raising.

        Raises
        ------
        PlayerUnavailable
            The daemon cannot be reached (``wait`` off).
        PlayerError
            It refused the password, or needs one.
        """
        async with self._connecting:
            if self._closed:
                raise PlayerError(f"the connection to MPD at {self.scope} is closed")
            if self._watcher is not None:
                return
            if wait:
                try:
                    client = await self._open()
                except PlayerError as exc:
                    client = await self._reconnect(str(exc), lost=False)
            else:
                client = await self._open()
            if self._closed:  # closed while we waited
                client.disconnect()
                raise PlayerError(f"the connection to MPD at {self.scope} is closed")
            self._attach(client)
            self._watcher = asyncio.create_task(self._watch(), name=f"follow {self.scope}")

    async def aclose(self) -> None:
        """Disconnect and stop reconnecting; :meth:`events` iterators end."""
        self._closed = True
        tasks = [task for task in (self._watcher, self._keepalive) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watcher = self._keepalive = None
        if self._client is not None:
            self._client.disconnect()
            self._client = None
        for subscriber in self._subscribers:
            subscriber.close()

    # --- the queue -----------------------------------------------------------------------

    async def current(self) -> QueuedTrack | None:
        """The current track (playing, paused, or next to play when stopped); None if none.

        Raises
        ------
        PlayerError
            MPD cannot be reached or refused.
        """
        song = await self._call("currentsong")
        if not song:
            return None
        return (await self._tracks([song]))[0]

    async def upcoming(self, limit: int | None = None) -> list[QueuedTrack]:
        """The tracks queued after the current one, in queue order (the whole queue when
        there is no current track; in random mode this is not the order MPD plays).

        Parameters
        ----------
        limit : int, optional
            At most this many (None: all).

        Raises
        ------
        PlayerError
            MPD cannot be reached or refused.
        """
        status = await self._call("status")
        start = int(status["song"]) + 1 if "song" in status else 0
        end = int(status.get("playlistlength", 0))
        if limit is not None:
            end = min(end, start + max(limit, 0))
        if start >= end:
            return []
        songs = await self._call("playlistinfo", f"{start}:{end}")
        return await self._tracks(songs)

    def playable(self, pick: Pick) -> Path | None:
        """A recommended track's local file (MPD queues files under its music root)."""
        return local_pick(pick)

    async def add(self, track: str | Path, after_current: bool = False) -> int:
        """Queue a track, right after the current one (``addid URI +0``) or at the end.

        Parameters
        ----------
        track : str or Path
            A song URI, or a local file under the music root.
        after_current : bool
            Insert right after the current track (at the end when there is none).

        Returns
        -------
        int
            The new queue entry's song id.

        Raises
        ------
        OutsideMusicRoot
            ``track`` is a file outside the music root.
        PlayerError
            MPD cannot be reached, or refused (a URI it does not know, say).
        """
        uri = await self.uri_for(track) if isinstance(track, Path) else track
        if after_current:
            try:
                return int(await self._call("addid", uri, "+0"))
            except _Refused as exc:
                if exc.code != _ACK_NO_CURRENT_SONG:
                    raise
        return int(await self._call("addid", uri))

    # --- stickers ------------------------------------------------------------------------

    async def set_stickers(self, uri: str, stickers: Mapping[str, str]) -> None:
        """Write stickers on a song (``sticker set song URI NAME VALUE`` for each).

        Parameters
        ----------
        uri : str
            The song URI (a song of MPD's database).
        stickers : mapping of str to str
            Names and values; a name holds no ``=``, neither holds a line break.

        Raises
        ------
        ValueError
            A name or value MPD's protocol cannot carry.
        PlayerError
            MPD cannot be reached or refused (no sticker database, an unknown song).
        """
        for name, value in stickers.items():
            _check_sticker(name, value)
        for name, value in stickers.items():
            await self._call("sticker_set", "song", uri, name, value, about=uri)

    async def stickers(self, uri: str) -> dict[str, str]:
        """The stickers of a song, by name.

        Raises
        ------
        PlayerError
            MPD cannot be reached or refused.
        """
        try:
            return dict(await self._call("sticker_list", "song", uri, about=uri))
        except _Refused as exc:
            if "no such sticker" in str(exc).lower():
                return {}
            raise

    async def find_by_sticker(self, name: str, value: str) -> list[str]:
        """The URIs of the songs whose sticker ``name`` equals ``value``, in MPD's order.

        Raises
        ------
        ValueError
            A name or value MPD's protocol cannot carry.
        PlayerError
            MPD cannot be reached or refused.
        """
        _check_sticker(name, value)
        found = await self._call("sticker_find", "song", "", name, "=", value,
                                 about=f"{name}={value}")
        return [str(entry["file"]) for entry in found]

    # --- files ---------------------------------------------------------------------------

    async def local_file(self, uri: str) -> Path:
        """The local file of a song URI (:func:`uri_to_path`, in a worker thread).

        Raises
        ------
        NoLocalFile
            A stream, an unset music root, or no file there.
        """
        return await asyncio.to_thread(uri_to_path, self._music_root, uri)

    async def uri_for(self, path: Path) -> str:
        """The song URI of a local file (:func:`path_to_uri`, in a worker thread).

        Raises
        ------
        OutsideMusicRoot
            The file is outside the music root.
        PlayerError
            The music root is unset or the file does not exist.
        """
        return await asyncio.to_thread(path_to_uri, self._music_root, path)

    # --- events --------------------------------------------------------------------------

    def events(self) -> AsyncIterator[frozenset[str]]:
        """MPD's changes, as sets of ``player``, ``playlist``, ``database``, until closed.

        The subscription starts when this is called. Changes that arrive while the consumer
        is busy are merged; after a reconnection all three are reported.

        Returns
        -------
        AsyncIterator of frozenset of str
            One set per wake-up.
        """
        subscriber = _Subscription()
        if self._closed:
            subscriber.close()
        self._subscribers.add(subscriber)
        return self._drain(subscriber)

    async def _drain(self, subscriber: _Subscription) -> AsyncIterator[frozenset[str]]:
        try:
            while True:
                while not subscriber.pending:
                    if subscriber.closed:
                        return
                    subscriber.ready.clear()
                    await subscriber.ready.wait()
                changes = frozenset(subscriber.pending)
                subscriber.pending.clear()
                yield changes
        finally:
            self._subscribers.discard(subscriber)

    def _publish(self, changes: frozenset[str]) -> None:
        for subscriber in self._subscribers:
            subscriber.push(changes)

    # --- the connection ------------------------------------------------------------------

    async def _open(self) -> _Client:
        """One connection attempt: connect, send the password, check that reading works."""
        client = _Client()
        step = "connect"
        try:
            await asyncio.wait_for(client.connect(self._host, self._port), self._timeout)
            if self._password is not None:
                step = "password"
                await asyncio.wait_for(
                    _awaited(client.password(self._password.get_secret_value())), self._timeout)
            step = "status"
            await asyncio.wait_for(_awaited(client.status()), self._timeout)
            if self._music_root is None and self._unix:
                self._music_root = await self._ask_music_root(client)
        except CommandError as exc:
            client.disconnect()
            code, text = _ack(exc)
            if code == _ACK_PASSWORD:
                raise PlayerError(f"MPD at {self.scope} refused the password "
                                  "(MER_MPD_PASSWORD)") from None
            if code == _ACK_PERMISSION:
                raise PlayerError(f"MPD at {self.scope} needs a password with read permission "
                                  "(MER_MPD_PASSWORD)") from None
            raise PlayerError(f"MPD at {self.scope} refused {step}: {text}") from None
        except (MPDError, OSError, TimeoutError) as exc:
            client.disconnect()
            raise PlayerUnavailable(f"cannot connect to MPD at {self.scope}: "
                                    f"{_describe(exc)}") from None
        except BaseException:
            client.disconnect()
            raise
        return client

    async def _ask_music_root(self, client: _Client) -> Path | None:
        try:
            folder = await asyncio.wait_for(_awaited(client.config()), self._timeout)
        except CommandError:
            return None
        return Path(folder) if folder else None

    def _attach(self, client: _Client) -> None:
        self._client = client
        if self._keepalive_s is not None:
            self._keepalive = asyncio.create_task(self._keep_alive(client),
                                                  name=f"ping {self.scope}")

    def _detach(self, client: _Client) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        client.disconnect()
        if self._client is client:
            self._client = None

    async def _watch(self) -> None:
        """Follow idle events; when the connection drops, reconnect and report everything."""
        while True:
            client = self._client
            assert client is not None
            reason = await self._follow(client)
            self._detach(client)
            self._attach(await self._reconnect(reason, lost=True))
            self._publish(SUBSYSTEMS)

    async def _follow(self, client: _Client) -> str:
        """Publish the client's idle events until its connection ends; returns why it did."""
        try:
            async for changed in client.idle(sorted(SUBSYSTEMS)):
                changes = frozenset(changed) & SUBSYSTEMS
                if changes:
                    self._publish(changes)
        except (MPDError, OSError) as exc:
            return _describe(exc)
        except Exception as exc:  # a bug must not end reconnection for good
            logger.exception("following MPD at %s failed", self.scope)
            return _describe(exc)
        return "the connection closed"

    async def _keep_alive(self, client: _Client) -> None:
        assert self._keepalive_s is not None
        while True:
            await asyncio.sleep(self._keepalive_s)
            try:
                await asyncio.wait_for(_awaited(client.ping()), self._timeout)
            except (MPDError, OSError, TimeoutError):
                client.disconnect()  # the idle follower hears of it and reconnects
                return

    async def _reconnect(self, reason: str, *, lost: bool) -> _Client:
        """Try to connect with the backoff until it works; logs the outage once."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        waits = ", ".join(f"{delay:g}" for delay in self._backoff)
        logger.warning("%s (%s); retrying in the background (waits of %s s, the last "
                       "repeating)", f"lost MPD at {self.scope}" if lost
                       else f"cannot reach MPD at {self.scope}", reason, waits)
        for attempt, delay in enumerate(backoff_delays(self._backoff), start=1):
            await asyncio.sleep(delay)
            try:
                client = await self._open()
            except PlayerError as exc:
                logger.debug("try %d to reach MPD at %s failed: %s", attempt, self.scope, exc)
                continue
            logger.info("%s MPD at %s after %.1f s (%d tries)",
                        "reconnected to" if lost else "connected to", self.scope,
                        loop.time() - started, attempt)
            return client
        raise AssertionError("unreachable: backoff_delays never ends")

    async def _call(self, command: str, *args: str, about: str | None = None) -> Any:
        """Run one MPD command on the current connection, with the command timeout; ``about``
        (default: the first argument) names what it was about in an error."""
        client = self._client
        if client is None or not client.connected:
            state = ("reconnecting" if self._watcher is not None and not self._closed
                     else "closed" if self._closed else "call connect() first")
            raise PlayerUnavailable(f"not connected to MPD at {self.scope} ({state})")
        try:
            return await asyncio.wait_for(_awaited(getattr(client, command)(*args)),
                                          self._timeout)
        except CommandError as exc:
            code, text = _ack(exc)
            name = command.replace("_", " ")
            about = about if about is not None else args[0] if args else None
            raise _Refused(code, f"MPD at {self.scope} refused {name}"
                                 f"{'' if about is None else ' ' + repr(about)}: {text}") from None
        except TimeoutError:  # before OSError, of which it is a subclass
            raise PlayerUnavailable(f"MPD at {self.scope} did not answer {command} within "
                                    f"{self._timeout:g} s") from None
        except (MPDError, OSError) as exc:
            raise PlayerUnavailable(f"lost MPD at {self.scope} during {command}: "
                                    f"{_describe(exc)}") from None

    async def _tracks(self, songs: Sequence[Mapping[str, Any]]) -> list[QueuedTrack]:
        root = self._music_root
        return await asyncio.to_thread(lambda: [_track(root, song) for song in songs])


class _Refused(PlayerError):
    """MPD answered a command with an error (``ACK [code@n] {command} text``)."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Subscription:
    """One consumer of :meth:`MpdPlayer.events`: the changes it has not read yet."""

    def __init__(self) -> None:
        self.pending: set[str] = set()
        self.ready = asyncio.Event()
        self.closed = False

    def push(self, changes: frozenset[str]) -> None:
        self.pending |= changes
        self.ready.set()

    def close(self) -> None:
        self.closed = True
        self.ready.set()


async def _awaited(result: Awaitable[Any]) -> Any:
    """Await a python-mpd2 result in a coroutine of its own, for :func:`asyncio.wait_for`.

    The results of list commands (``playlistinfo``, ``sticker find``) are futures that are
    filled only through their own ``__await__``; ``wait_for`` would take them as plain futures
    and wait forever.
    """
    return await result


def _track(music_root: Path | None, song: Mapping[str, Any]) -> QueuedTrack:
    """A queue entry from MPD's song fields (reads the file system)."""
    uri = str(song["file"])
    path: Path | None
    try:
        path, reason = uri_to_path(music_root, uri), None
    except NoLocalFile as exc:
        path, reason = None, str(exc)
    return QueuedTrack(song_id=int(song["id"]), position=int(song["pos"]), uri=uri,
                       title=_tag(song, "title") or _tag(song, "name"),
                       artist=_tag(song, "artist"), duration_s=_duration(song), path=path,
                       no_file_reason=reason)


def _tag(song: Mapping[str, Any], name: str) -> str | None:
    value = song.get(name)
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return str(value) if value else None


def _duration(song: Mapping[str, Any]) -> float | None:
    for key in ("duration", "time"):
        try:
            seconds = float(song[key])
        except (KeyError, TypeError, ValueError):
            continue
        return seconds if seconds > 0 else None
    return None


def _ack(exc: CommandError) -> tuple[int | None, str]:
    """MPD's error code and text from ``[50@0] {addid} No such song``."""
    match = _ACK.match(str(exc))
    if match is None:
        return None, str(exc)
    return int(match["code"]), match["text"].strip()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, MPDError) and not text:
        return "the connection was lost"
    return text or type(exc).__name__


def _check_sticker(name: str, value: str) -> None:
    if not name or "=" in name or any(c in name + value for c in "\r\n"):
        raise ValueError(f"sticker {name!r}={value!r}: names need text without '=', and "
                         "neither may hold a line break")


if TYPE_CHECKING:
    def _implements_the_protocol(player: MpdPlayer) -> Player:
        return player  # mypy checks MpdPlayer against bot.service.player.Player here
