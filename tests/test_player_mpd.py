"""MpdPlayer against a real, throwaway MPD (tests/fakes/mpd.py): queue, stickers, files, events,
password, Unix socket, and reconnection after the daemon is killed or freezes."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bot.player.mpd import (
    DEFAULT_BACKOFF_S,
    MpdPlayer,
    backoff_delays,
    path_to_uri,
    uri_to_path,
)
from bot.service import Player
from bot.service.player import (
    SUBSYSTEMS,
    NoLocalFile,
    OutsideMusicRoot,
    PlayerError,
    PlayerUnavailable,
)
from bot.settings import PlayerSettings
from tests.fakes.mpd import MpdDaemon, free_port

LOGGER = "bot.player.mpd"
FAST = {"backoff_s": (0.05,), "command_timeout_s": 5.0, "keepalive_s": None}


@pytest.fixture
async def player(mpd_server: MpdDaemon) -> AsyncIterator[MpdPlayer]:
    async with MpdPlayer(mpd_server.player_settings(), **FAST) as player:
        yield player


def queue(daemon: MpdDaemon, *uris: str, play: int | None = None) -> None:
    """Queue songs with a second, independent client, and start playing one."""
    with daemon.client() as client:
        for uri in uris:
            client.add(uri)
        if play is not None:
            client.play(play)


def mpd_state(daemon: MpdDaemon) -> dict[str, str]:
    with daemon.client() as client:
        return dict(client.status())


def queued_uris(daemon: MpdDaemon) -> list[str]:
    with daemon.client() as client:
        return [song["file"] for song in client.playlistinfo()]


async def until(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout_s} s")
        await asyncio.sleep(0.02)


async def next_with(events: AsyncIterator[frozenset[str]], wanted: str,
                    timeout_s: float = 5.0) -> frozenset[str]:
    """The next event set that names ``wanted`` (others are skipped)."""
    async def wait() -> frozenset[str]:
        async for changes in events:
            if wanted in changes:
                return changes
        raise AssertionError("the event stream ended")

    return await asyncio.wait_for(wait(), timeout_s)


# --- the queue ---------------------------------------------------------------------------


async def test_current_and_upcoming_while_playing(player: MpdPlayer,
                                                  mpd_server: MpdDaemon) -> None:
    assert isinstance(player, Player)
    assert player.scope == f"mpd:127.0.0.1:{mpd_server.port}"
    assert await player.current() is None
    assert await player.upcoming() == []

    uris = mpd_server.uris
    queue(mpd_server, uris[4], uris[0], uris[7], uris[2], play=0)
    assert mpd_state(mpd_server)["state"] == "play"

    now = await player.current()
    assert now is not None
    assert (now.position, now.uri, now.artist, now.title) == (0, uris[4], "Minor Key", "Low Hum")
    assert now.duration_s == pytest.approx(60.0, abs=0.1)
    assert now.path == (mpd_server.music_dir / uris[4]).resolve()
    assert now.local_file() == now.path and now.no_file_reason is None

    later = await player.upcoming()
    assert [(t.position, t.uri) for t in later] == [(1, uris[0]), (2, uris[7]), (3, uris[2])]
    assert len({t.song_id for t in [now, *later]}) == 4
    untagged = later[1]
    assert (untagged.artist, untagged.title) == (None, None)
    assert untagged.path == (mpd_server.music_dir / "calm/Still Water - Lullaby.flac").resolve()
    assert [t.uri for t in await player.upcoming(limit=2)] == [uris[0], uris[7]]
    assert await player.upcoming(limit=0) == []

    with mpd_server.client() as client:
        client.play(2)
    now = await player.current()
    assert now is not None and now.uri == uris[7]
    assert [t.uri for t in await player.upcoming()] == [uris[2]]


async def test_add_after_the_current_track_or_at_the_end(player: MpdPlayer,
                                                         mpd_server: MpdDaemon) -> None:
    uris = mpd_server.uris
    # Nothing current: "after the current track" falls back to the end of the queue.
    first = await player.add(uris[0], after_current=True)
    queue(mpd_server, uris[1], uris[2], play=0)

    nxt = await player.add(uris[5], after_current=True)
    last = await player.add(uris[6])
    from_file = await player.add(mpd_server.music_dir / uris[3], after_current=True)
    assert queued_uris(mpd_server) == [uris[0], uris[3], uris[5], uris[1], uris[2], uris[6]]

    upcoming = await player.upcoming()
    assert upcoming[0].song_id == from_file and upcoming[1].song_id == nxt
    assert upcoming[-1].song_id == last
    assert (await player.current()).song_id == first

    with pytest.raises(PlayerError, match="No such song"):
        await player.add("not/in/the/library.flac")


async def test_a_path_outside_the_music_root_is_refused(player: MpdPlayer,
                                                        mpd_server: MpdDaemon,
                                                        tmp_path: Path) -> None:
    stray = tmp_path / "stray.flac"
    shutil.copy(mpd_server.music_dir / mpd_server.uris[0], stray)
    with pytest.raises(OutsideMusicRoot, match="outside MPD's music root") as caught:
        await player.add(stray)
    assert caught.value.path == stray
    with pytest.raises(OutsideMusicRoot):
        await player.add(mpd_server.music_dir / ".." / "mpd.conf")
    with pytest.raises(PlayerError, match="no such file"):
        await player.add(mpd_server.music_dir / "bright" / "missing.flac")
    assert queued_uris(mpd_server) == []


def test_paths_map_to_uris_through_a_linked_root(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "a b").mkdir(parents=True)
    song = real / "a b" / "x.flac"
    song.write_bytes(b"fLaC")
    link = tmp_path / "link"
    link.symlink_to(real)
    assert path_to_uri(link, song) == "a b/x.flac"
    assert path_to_uri(real, link / "a b" / "x.flac") == "a b/x.flac"
    assert uri_to_path(link, "a b/x.flac") == song.resolve()
    with pytest.raises(PlayerError, match="MER_MPD_MUSIC_ROOT"):
        path_to_uri(None, song)
    with pytest.raises(OutsideMusicRoot):
        path_to_uri(real / "a b", real / "x.flac")


# --- stickers ------------------------------------------------------------------------------


async def test_stickers_are_written_and_found(player: MpdPlayer, mpd_server: MpdDaemon) -> None:
    calm, also_calm, happy = mpd_server.uris[6], mpd_server.uris[7], mpd_server.uris[0]
    await player.set_stickers(calm, {"mood": "calm", "valence": "0.31", "arousal": "-0.4"})
    await player.set_stickers(also_calm, {"mood": "calm"})
    await player.set_stickers(happy, {"mood": "happy"})

    assert sorted(await player.find_by_sticker("mood", "calm")) == sorted([calm, also_calm])
    assert await player.find_by_sticker("mood", "happy") == [happy]
    assert await player.find_by_sticker("mood", "sad") == []
    assert await player.stickers(calm) == {"mood": "calm", "valence": "0.31", "arousal": "-0.4"}
    assert await player.stickers(mpd_server.uris[3]) == {}
    with mpd_server.client() as other:  # visible to every MPD client
        assert other.sticker_get("song", calm, "mood") == "calm"

    with pytest.raises(ValueError, match="line break"):
        await player.set_stickers(calm, {"mood": "calm\nsetvol 100"})
    with pytest.raises(ValueError):
        await player.set_stickers(calm, {"a=b": "c"})
    with pytest.raises(PlayerError, match=r"sticker set 'nowhere\.flac'"):
        await player.set_stickers("nowhere.flac", {"mood": "calm"})


# --- song URIs without a file ------------------------------------------------------------


async def test_a_song_without_a_file_under_the_music_root_is_named(mpd_server: MpdDaemon,
                                                                   tmp_path: Path) -> None:
    # This machine's copy of the library lacks one of MPD's songs.
    present, absent = mpd_server.uris[0], mpd_server.uris[2]
    (tmp_path / present).parent.mkdir(parents=True)
    shutil.copy(mpd_server.music_dir / present, tmp_path / present)
    queue(mpd_server, present, absent, play=0)

    settings = mpd_server.player_settings(mpd_music_root=tmp_path)
    async with MpdPlayer(settings, **FAST) as player:
        now = await player.current()
        assert now is not None and now.path == (tmp_path / present).resolve()
        [missing] = await player.upcoming()
        assert missing.uri == absent and missing.path is None
        assert missing.no_file_reason == (
            f"song {absent!r} has no file under the music root {str(tmp_path)!r} "
            "(is MER_MPD_MUSIC_ROOT MPD's music_directory?)")
        with pytest.raises(NoLocalFile, match="has no file under the music root") as caught:
            missing.local_file()
        assert caught.value.uri == absent
        with pytest.raises(NoLocalFile, match="has no file"):
            await player.local_file(absent)
        assert await player.local_file(present) == (tmp_path / present).resolve()


@pytest.mark.parametrize(("root", "uri", "message"), [
    ("music", "http://radio.example/stream.mp3", "is a stream or URL"),
    ("music", "https://x.example/a.flac?token=1", "is a stream or URL"),
    ("music", "../secret.flac", "points outside the music root"),
    ("music", "album.cue/track0001", "has no file under the music root"),
    (None, "a.flac", "the music root is not set (MER_MPD_MUSIC_ROOT"),
    ("music", "/nonexistent/abs.flac", "has no file"),
])
def test_uris_that_name_no_local_file(tmp_path: Path, root: str | None, uri: str,
                                      message: str) -> None:
    (tmp_path / "secret.flac").write_bytes(b"x")
    (tmp_path / "music").mkdir()
    with pytest.raises(NoLocalFile, match=message.replace("(", r"\(").replace("?", r"\?")):
        uri_to_path(tmp_path / root if root else None, uri)


# --- events --------------------------------------------------------------------------------


async def test_events_arrive_when_the_queue_and_the_player_change(
        player: MpdPlayer, mpd_server: MpdDaemon) -> None:
    events = player.events()
    await asyncio.to_thread(queue, mpd_server, mpd_server.uris[1])
    assert "playlist" in await next_with(events, "playlist")
    await asyncio.to_thread(queue, mpd_server, play=0)
    assert "player" in await next_with(events, "player")
    await player.add(mpd_server.uris[2])  # our own changes are reported too
    assert "playlist" in await next_with(events, "playlist")

    ended = player.events()
    await player.aclose()
    assert [changes async for changes in ended] == []


# --- connection ----------------------------------------------------------------------------


def test_the_default_backoff_is_5_10_60_then_300_seconds() -> None:
    assert DEFAULT_BACKOFF_S == (5.0, 10.0, 60.0, 300.0)
    assert list(itertools.islice(backoff_delays(), 7)) == [5, 10, 60, 300, 300, 300, 300]
    assert list(itertools.islice(backoff_delays((0.1, 0.2)), 4)) == [0.1, 0.2, 0.2, 0.2]
    with pytest.raises(ValueError):
        MpdPlayer(_settings(port=6600), backoff_s=())


def _settings(**values: object) -> PlayerSettings:
    values = {"password": None, "music_root": None, **values}
    return PlayerSettings(_env_file=None, **{f"mpd_{k}": v for k, v in values.items()})


async def test_nothing_listening_is_a_clear_error() -> None:
    port = free_port()
    player = MpdPlayer(_settings(host="127.0.0.1", port=port), **FAST)
    with pytest.raises(PlayerUnavailable,
                       match=rf"^cannot connect to MPD at mpd:127\.0\.0\.1:{port}: "):
        await player.connect()
    with pytest.raises(PlayerUnavailable, match=r"not connected .* \(call connect\(\) first\)"):
        await player.current()


async def test_connect_can_wait_for_the_daemon(mpd_server: MpdDaemon,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    mpd_server.kill()
    player = MpdPlayer(mpd_server.player_settings(), **FAST)
    try:
        waiting = asyncio.create_task(player.connect(wait=True))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await mpd_server.astart()
        await asyncio.wait_for(waiting, 5)
        assert player.connected and await player.upcoming() == []
    finally:
        await player.aclose()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records
                if r.name == LOGGER and r.levelno > logging.DEBUG]
    assert [level for level, _ in messages] == [logging.WARNING, logging.INFO]
    assert messages[0][1].startswith(f"cannot reach MPD at {player.scope} (cannot connect")
    assert messages[1][1].startswith(f"connected to MPD at {player.scope} after")


async def test_the_daemon_killed_and_restarted_the_player_reconnects(
        player: MpdPlayer, mpd_server: MpdDaemon, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    events = player.events()
    queue(mpd_server, mpd_server.uris[0], play=0)
    assert "playlist" in await next_with(events, "playlist")

    mpd_server.kill()
    await until(lambda: not player.connected)
    with pytest.raises(PlayerUnavailable, match=f"MPD at {player.scope}"):
        await player.current()
    await asyncio.sleep(0.5)  # several failed tries with the tiny backoff
    await mpd_server.astart()

    assert await next_with(events, "database") == SUBSYSTEMS  # everything may have changed
    assert player.connected
    await player.add(mpd_server.uris[1])
    assert [t.uri for t in await player.upcoming()] == [mpd_server.uris[1]]
    assert "playlist" in await next_with(events, "playlist")

    ours = [r for r in caplog.records if r.name == LOGGER]
    warnings = [r.getMessage() for r in ours if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in ours if r.levelno == logging.INFO]
    tries = [r for r in ours if r.levelno == logging.DEBUG and "failed" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"lost MPD at {player.scope}")
    assert len(infos) == 1 and infos[0].startswith(f"reconnected to MPD at {player.scope}")
    assert len(tries) >= 3  # logged once, although tried many times
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_frozen_daemon_is_noticed_by_the_keepalive(
        mpd_server: MpdDaemon, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    settings = mpd_server.player_settings()
    async with MpdPlayer(settings, backoff_s=(0.05,), command_timeout_s=0.3,
                         keepalive_s=0.1) as player:
        events = player.events()
        assert mpd_server.process is not None
        pid = mpd_server.process.pid
        os.kill(pid, signal.SIGSTOP)  # the connection stays open, nothing answers
        try:
            await until(lambda: not player.connected, timeout_s=5)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert await next_with(events, "player") == SUBSYSTEMS
        assert player.connected and await player.current() is None
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 2 and messages[0].startswith("lost MPD")


# --- password and Unix socket --------------------------------------------------------------


async def test_a_password_is_sent_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-Pa55"
    with MpdDaemon(tracks=(), password=secret) as daemon:
        async with MpdPlayer(daemon.player_settings(), **FAST) as player:
            assert await player.upcoming() == []
            assert secret not in repr(player) and secret not in player.scope
        wrong = MpdPlayer(daemon.player_settings(mpd_password="wrong"), **FAST)
        with pytest.raises(PlayerError, match="refused the password") as refused:
            await wrong.connect()
        none = MpdPlayer(daemon.player_settings(mpd_password=None), **FAST)
        with pytest.raises(PlayerError, match="needs a password") as needs:
            await none.connect()
    assert "wrong" not in str(refused.value) and secret not in str(needs.value)
    assert not any(secret in r.getMessage() for r in caplog.records)


async def test_a_unix_socket_reveals_the_music_root(mpd_server: MpdDaemon) -> None:
    settings = mpd_server.player_settings(mpd_host=str(mpd_server.socket_path),
                                          mpd_music_root=None)
    queue(mpd_server, mpd_server.uris[3], play=0)
    async with MpdPlayer(settings, **FAST) as player:
        assert player.scope == f"mpd:{mpd_server.socket_path}"
        assert player.music_root == mpd_server.music_dir
        now = await player.current()
        assert now is not None
        assert now.path == (mpd_server.music_dir / mpd_server.uris[3]).resolve()
