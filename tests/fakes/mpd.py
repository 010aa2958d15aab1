"""A real, throwaway MPD for tests: its own config, library, port and sticker file.

:class:`MpdDaemon` writes a handful of short FLAC files (synthetic clips with artist and title
tags, or only a telling file name) into a temporary music folder, starts ``mpd --no-daemon`` on
127.0.0.1 with a free port (never 6600) and a Unix socket, with a null audio output (it plays at
real-time speed, silently) and no zeroconf, and waits until it answers and its database holds
every file. :meth:`MpdDaemon.kill` and :meth:`MpdDaemon.restart` test reconnection; the daemon is
stopped when the session ends, when the process exits, and (on Linux) if the test process dies.

Fixtures (registered in ``tests/conftest.py``):

- ``mpd_daemon`` (session): the running daemon; fails, not skips, when ``mpd`` is missing.
- ``mpd_server`` (function): the same daemon, running, with an empty queue, playback stopped,
  no stickers and default play modes.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import pytest
import soundfile as sf
from mpd import CommandError, MPDClient

from bot.settings import PlayerSettings
from tests.synth import SR, mood_clip

INSTALL_HINT = ("mpd is not installed: `apt-get install mpd` (make setup does it); the MPD "
                "tests run against the real daemon and are never skipped")


@dataclass(frozen=True)
class LibraryTrack:
    """One file of the test library.

    Attributes
    ----------
    uri : str
        Its path under the music folder (MPD's song URI).
    artist, title : str or None
        Tags written into the file (None: untagged, only the file name tells).
    quadrant : str
        The mood of its synthetic audio (``Q1`` .. ``Q4``, :func:`tests.synth.mood_clip`).
    seconds : float
        Its length; long enough that a test never sees a track end by itself.
    """

    uri: str
    artist: str | None
    title: str | None
    quadrant: str = "Q1"
    seconds: float = 60.0


#: Eight tracks by four artists (two each), one untagged, one in a folder with a space.
DEFAULT_LIBRARY: tuple[LibraryTrack, ...] = (
    LibraryTrack("bright/sunny.flac", "The Oscillators", "Sunny Sine", "Q1"),
    LibraryTrack("bright/major-lift.flac", "The Oscillators", "Major Lift", "Q1"),
    LibraryTrack("loud/buzz.flac", "Square Waves", "Buzz Saw", "Q2"),
    LibraryTrack("loud/alarm.flac", "Square Waves", "Alarm Clock", "Q2"),
    LibraryTrack("dark/low-hum.flac", "Minor Key", "Low Hum", "Q3"),
    LibraryTrack("dark/rain.flac", "Minor Key", "Rain", "Q3"),
    LibraryTrack("calm/soft pad.flac", "Still Water", "Soft Pad", "Q4"),
    LibraryTrack("calm/Still Water - Lullaby.flac", None, None, "Q4"),
)

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (never MPD's 6600)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port != 6600:
            return port


def write_library(music_dir: Path, tracks: tuple[LibraryTrack, ...]) -> None:
    """Write each track as a FLAC file with its tags."""
    for i, track in enumerate(tracks):
        path = music_dir / track.uri
        path.parent.mkdir(parents=True, exist_ok=True)
        # 8 s of synthetic mood, repeated: long files for the price of short ones.
        clip = mood_clip(track.quadrant, seconds=min(track.seconds, 8.0), seed=i)
        samples = np.tile(clip, int(np.ceil(track.seconds * SR / len(clip))))
        samples = samples[: int(track.seconds * SR)]
        with sf.SoundFile(path, "w", samplerate=SR, channels=1, format="FLAC") as out:
            if track.artist:
                out.artist = track.artist
            if track.title:
                out.title = track.title
            out.write(samples)


class MpdDaemon:
    """One ``mpd`` process with its own folder, config, library, port and Unix socket.

    Parameters
    ----------
    tracks : tuple of LibraryTrack
        The library written into the music folder.
    password : str, optional
        Require this password for every permission (default: none needed).
    executable : str, optional
        The ``mpd`` binary (default: the one on PATH).
    """

    host = "127.0.0.1"

    def __init__(self, tracks: tuple[LibraryTrack, ...] = DEFAULT_LIBRARY, *,
                 password: str | None = None, executable: str | None = None) -> None:
        exe = executable or shutil.which("mpd")
        if exe is None:
            raise FileNotFoundError(INSTALL_HINT)
        self.executable = exe
        self.tracks = tracks
        self.password = password
        # A short folder of our own: a Unix socket path must stay under ~100 characters.
        self.root = Path(tempfile.mkdtemp(prefix="mer-mpd-"))
        self.music_dir = self.root / "music"
        self.playlist_dir = self.root / "playlists"
        self.sticker_file = self.root / "sticker.sql"
        self.log_file = self.root / "mpd.log"
        self.socket_path = self.root / "socket"
        self.config_file = self.root / "mpd.conf"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.music_dir.mkdir()
        self.playlist_dir.mkdir()
        write_library(self.music_dir, tracks)
        self._write_config()
        atexit.register(self.close)

    @property
    def uris(self) -> list[str]:
        """The song URIs of the library, in the order of ``tracks``."""
        return [track.uri for track in self.tracks]

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def player_settings(self, **overrides: Any) -> PlayerSettings:
        """Settings that point :class:`bot.player.mpd.MpdPlayer` at this daemon over TCP
        (the environment and ``.env`` are not read)."""
        values: dict[str, Any] = {"mpd_host": self.host, "mpd_port": self.port,
                                  "mpd_password": self.password,
                                  "mpd_music_root": self.music_dir}
        values.update(overrides)
        return PlayerSettings(_env_file=None, **values)  # type: ignore[call-arg]

    # --- the process ---------------------------------------------------------------------

    def start(self, timeout_s: float = 20.0) -> None:
        """Start the daemon and wait until it answers and its database is complete."""
        self._spawn()
        self.wait_ready(timeout_s)

    async def astart(self, timeout_s: float = 20.0) -> None:
        """:meth:`start` for async tests: spawns here, waits in a worker thread."""
        import asyncio

        self._spawn()
        await asyncio.to_thread(self.wait_ready, timeout_s)

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL after 5 s); nothing if it is not running."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def kill(self) -> None:
        """Kill the daemon at once (SIGKILL): connections drop without a goodbye."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)

    def restart(self, timeout_s: float = 20.0) -> None:
        """Stop (if running) and start again on the same port, socket and files."""
        self.stop()
        self.start(timeout_s)

    async def arestart(self, timeout_s: float = 20.0) -> None:
        """:meth:`restart` for async tests."""
        self.stop()
        await self.astart(timeout_s)

    def close(self) -> None:
        """Stop the daemon and delete its folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- talking to it -------------------------------------------------------------------

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A connected synchronous python-mpd2 client (authenticated when needed)."""
        client = MPDClient()
        client.timeout = 10
        client.connect(self.host, self.port)
        try:
            if self.password:
                client.password(self.password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.disconnect()

    def reset(self) -> None:
        """Make sure it runs; empty the queue, stop, default modes, delete every sticker."""
        if not self.running:
            self.start()
        with self.client() as client:
            client.stop()
            client.clear()
            for mode in ("random", "repeat", "single", "consume"):
                getattr(client, mode)(0)
            for uri in self.uris:
                with contextlib.suppress(CommandError):
                    client.sticker_delete("song", uri)

    def update(self, timeout_s: float = 20.0) -> None:
        """Rescan the music folder (after a test added files) and wait until it is done."""
        with self.client() as client:
            client.update()
            self._wait_update(client, time.monotonic() + timeout_s)

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        """Wait until the daemon answers, no update runs and every library file is known."""
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"mpd exited at start:\n{self.log_tail()}")
            try:
                with self.client() as client:
                    self._wait_update(client, deadline)
                    songs = int(client.stats()["songs"])
                    if songs < len(self.tracks):
                        client.update()
                        self._wait_update(client, deadline)
                        songs = int(client.stats()["songs"])
                    if songs < len(self.tracks):
                        raise RuntimeError(f"mpd knows {songs} of {len(self.tracks)} files:\n"
                                           f"{self.log_tail()}")
                    return
            except (OSError, ConnectionError) as exc:
                last_error = exc
                time.sleep(0.05)
        raise TimeoutError(f"mpd did not become ready in {timeout_s} s ({last_error}):\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The end of the daemon's log."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- internals -----------------------------------------------------------------------

    def _spawn(self) -> None:
        if self.running:
            raise RuntimeError("mpd is already running")
        self.process = subprocess.Popen(
            [self.executable, "--no-daemon", str(self.config_file)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self.log_file.with_suffix(".stderr").open("ab"),
            preexec_fn=_die_with_parent if _can_die_with_parent() else None)

    @staticmethod
    def _wait_update(client: Any, deadline: float) -> None:
        while "updating_db" in client.status():
            if time.monotonic() > deadline:
                raise TimeoutError("mpd's database update did not finish")
            time.sleep(0.05)

    def _write_config(self) -> None:
        def quoted(value: object) -> str:
            return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

        lines = [
            f"music_directory {quoted(self.music_dir)}",
            f"playlist_directory {quoted(self.playlist_dir)}",
            f"db_file {quoted(self.root / 'database')}",
            f"state_file {quoted(self.root / 'state')}",
            f"sticker_file {quoted(self.sticker_file)}",
            f"log_file {quoted(self.log_file)}",
            f"bind_to_address {quoted(self.host)}",
            f"bind_to_address {quoted(self.socket_path)}",
            f"port {quoted(self.port)}",
            'zeroconf_enabled "no"',
            'auto_update "no"',
            'audio_output {\n  type "null"\n  name "null"\n  mixer_type "none"\n}',
        ]
        if self.password:
            lines += [f"password {quoted(self.password + '@read,add,control,admin')}",
                      'default_permissions ""']
        self.config_file.write_text("\n".join(lines) + "\n")


def _load_prctl() -> Any:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None).prctl  # looked up here, not in the forked child
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _can_die_with_parent() -> bool:
    # PR_SET_PDEATHSIG fires when the *thread* that forked exits: only the main thread lives
    # as long as the process.
    return _PRCTL is not None and threading.current_thread() is threading.main_thread()


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies (Linux)."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _start_daemon(**kwargs: Any) -> MpdDaemon:
    if shutil.which("mpd") is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    daemon = MpdDaemon(**kwargs)
    try:
        daemon.start()
    except BaseException:
        daemon.close()
        raise
    return daemon


@pytest.fixture(scope="session")
def mpd_daemon() -> Iterator[MpdDaemon]:
    """A running throwaway MPD with :data:`DEFAULT_LIBRARY`, shared by the session."""
    daemon = _start_daemon()
    try:
        yield daemon
    finally:
        daemon.close()


@pytest.fixture
def mpd_server(mpd_daemon: MpdDaemon) -> MpdDaemon:
    """The session's MPD, running, with an empty queue, stopped, and no stickers."""
    mpd_daemon.reset()
    return mpd_daemon

