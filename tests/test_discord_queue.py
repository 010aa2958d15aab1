"""The guild queue: its state machine in the database, the ``/queue`` commands, the listener
that follows it (classify ahead, auto-suggest, auto-DJ), and voice playback's state machine.

The fixture library holds eight classified tracks (ids 1-8, two per mood; see
tests/fakes/moodlib.py). Voice cannot reach Discord here: playback runs against a stand-in
voice client that plays nothing and reports the end of a track when told to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.discord.bot import QUEUE_COG, MoodBot, TrackQueue
from bot.discord.cogs.queue import KEEP, Queue, SuggestionsView
from bot.discord.queue import AUTO_DJ, GuildPlayer, GuildQueues
from bot.discord.voice import VoicePlayback
from bot.service import MoodService, ServiceError
from bot.service.player import Player
from tests.fakes.discord_fixtures import (  # noqa: F401  (SQLite and PostgreSQL)
    service_on_both_backends,
)
from tests.fakes.interactions import GUILD_ID, FakeInteraction, click, invoke
from tests.fakes.moodlib import open_service, service_on

MANAGER = discord.Permissions(manage_guild=True)


def _queue_cog(bot: MoodBot) -> Queue:
    """The loaded cog (an extension's module is loaded anew: compare class names)."""
    cog = bot.get_cog(QUEUE_COG)
    assert type(cog).__name__ == Queue.__name__
    return cog  # type: ignore[return-value]


async def _settle(until: Callable[[], bool] | None = None, *, rounds: int = 200) -> None:
    """Let background tasks (the listener, posts) run until ``until`` holds."""
    for _ in range(rounds):
        await asyncio.sleep(0.01)
        if until is not None and until():
            return
    if until is not None:
        raise AssertionError("the background work did not finish")


def _text(interaction: FakeInteraction) -> str:
    return "\n".join(s.text for s in interaction.sent if s.kind != "defer")


# --- the state machine ---------------------------------------------------------------------


async def test_first_track_starts_then_the_rest_wait_in_order(service: MoodService) -> None:
    queues = GuildQueues(service, _tracks(service))
    (first,) = await queues.add(GUILD_ID, "1", [3])
    assert first.playing and first.position == 0 and first.name == "Thunder - Storm Warning"
    added = await queues.add(GUILD_ID, "2", [5, 7])
    assert [(i.position, i.track_id) for i in added] == [(1, 5), (2, 7)]
    assert [i.track_id for i in await queues.items(GUILD_ID)] == [3, 5, 7]
    assert await queues.length(GUILD_ID) == 2

    following = await queues.advance(GUILD_ID)  # Storm Warning ended
    assert following is not None and following.track_id == 5 and following.playing
    assert [i.track_id for i in await queues.items(GUILD_ID)] == [5, 7]
    assert await queues.items(GUILD_ID + 1) == []  # another guild's queue is its own


async def test_advance_of_a_stale_entry_changes_nothing(service: MoodService) -> None:
    queues = GuildQueues(service, _tracks(service))
    (first,) = await queues.add(GUILD_ID, "1", [1])
    await queues.add(GUILD_ID, "1", [2])
    await queues.advance(GUILD_ID, skipped=True)  # a skip replaced entry ``first``
    assert await queues.advance(GUILD_ID, entry_id=first.entry_id) is None
    current = await queues.current(GUILD_ID)
    assert current is not None and current.track_id == 2


async def test_the_queue_runs_out_then_starts_again(service: MoodService) -> None:
    queues = GuildQueues(service, _tracks(service))
    await queues.add(GUILD_ID, "1", [1])
    assert await queues.advance(GUILD_ID) is None
    assert await queues.current(GUILD_ID) is None
    (again,) = await queues.add(GUILD_ID, "1", [4])
    assert again.playing


async def test_remove_and_clear_leave_the_current_track(service: MoodService) -> None:
    queues = GuildQueues(service, _tracks(service))
    await queues.add(GUILD_ID, "1", [1, 2, 3, 4])
    removed = await queues.remove(GUILD_ID, 2)
    assert removed.track_id == 3
    assert [i.track_id for i in await queues.items(GUILD_ID)] == [1, 2, 4]
    with pytest.raises(ServiceError, match=r"no track at position 3 \(positions 1 to 2\)"):
        await queues.remove(GUILD_ID, 3)
    assert await queues.clear(GUILD_ID) == 2
    assert [i.track_id for i in await queues.items(GUILD_ID)] == [1]
    with pytest.raises(ServiceError, match="nothing is waiting"):
        await queues.remove(GUILD_ID, 1)
    assert await queues.clear(GUILD_ID) == 0


async def test_unknown_tracks_and_a_full_queue_are_refused(service: MoodService) -> None:
    queues = GuildQueues(service, _tracks(service), max_queued=3)
    with pytest.raises(ServiceError, match="track 99 is not in the library"):
        await queues.add(GUILD_ID, "1", [1, 99])
    assert await queues.items(GUILD_ID) == []  # nothing of a refused add is kept
    await queues.add(GUILD_ID, "1", [1, 2, 3, 4])  # one plays, three wait
    with pytest.raises(ServiceError, match="at most 3 tracks and has 3 waiting"):
        await queues.add(GUILD_ID, "1", [5])
    with pytest.raises(ServiceError, match="nothing to queue"):
        await queues.add(GUILD_ID, "1", [])


async def test_the_queue_survives_a_restart(library_db: Path, tmp_path: Path) -> None:
    async with open_service(library_db, tmp_path) as first:
        queues = GuildQueues(first, _tracks(first))
        await queues.add(GUILD_ID, "1", [6, 7, 8])
        await queues.advance(GUILD_ID)
    async with service_on(tmp_path / "mood.db") as second:  # the same database file, a new service
        queues = GuildQueues(second, _tracks(second))
        assert [i.track_id for i in await queues.items(GUILD_ID)] == [7, 8]
        assert await queues.active_guilds() == [GUILD_ID]


async def test_changes_are_announced_and_merged(service: MoodService) -> None:
    queues = GuildQueues(service, _tracks(service))
    changes = queues.changes(GUILD_ID)
    await queues.add(GUILD_ID, "1", [1])
    await queues.add(GUILD_ID, "1", [2])  # while nobody looked: merged with the first
    await asyncio.wait_for(anext(changes), 1.0)
    waiting = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    await queues.advance(GUILD_ID)
    await asyncio.wait_for(waiting, 1.0)
    changes.close()
    with pytest.raises(StopAsyncIteration):
        await anext(changes)


async def test_guild_player_speaks_the_player_protocol(service: MoodService) -> None:
    queues = GuildQueues(service, _tracks(service))
    player = GuildPlayer(queues, GUILD_ID)
    assert isinstance(player, Player) and player.scope == f"discord:{GUILD_ID}"
    assert await player.current() is None
    await queues.add(GUILD_ID, "1", [1, 2, 3])
    current = await player.current()
    assert current is not None and current.classify_query() == "track:1"
    assert [t.ref for t in await player.upcoming(1)] == ["track:2"]
    entry = await player.add("track:4")
    assert [(i.entry_id, i.requested_by) for i in await queues.items(GUILD_ID)][-1] == (
        entry, AUTO_DJ)
    with pytest.raises(ServiceError, match="stored tracks"):
        await player.add(Path("/music/x.mp3"))
    with pytest.raises(ServiceError, match="at its end only"):
        await player.add("track:5", after_current=True)


# --- commands ------------------------------------------------------------------------------


async def test_the_cog_is_the_bots_track_queue(bot: MoodBot) -> None:
    assert isinstance(bot.track_queue(), TrackQueue)
    now = FakeInteraction.slash(bot, "mood now")
    await invoke(bot.tree, now)
    assert now.sent[0].ephemeral and now.sent[0].text == "Nothing is playing."
    await _queue_cog(bot).enqueue(GUILD_ID, 5, [7])
    now = FakeInteraction.slash(bot, "mood now")
    await invoke(bot.tree, now)
    assert "Still Water" in _text(now)


async def test_add_a_stored_track_answers_at_once(bot: MoodBot) -> None:
    first = FakeInteraction.slash(bot, "queue add", query="track:2", user_id=11)
    await invoke(bot.tree, first)
    assert [s.kind for s in first.sent] == ["message"]  # no deferral for a stored track
    assert first.sent[0].text == "Now playing **Joy Band - Happy Hour**."
    second = FakeInteraction.slash(bot, "queue add", query="track:5", user_id=12)
    await invoke(bot.tree, second)
    assert second.sent[0].text == "Queued **Grey Skies - Rainy Window** at position 1."


async def test_add_of_a_new_song_defers_and_says_why_it_failed(bot: MoodBot) -> None:
    interaction = FakeInteraction.slash(bot, "queue add", query="Nobody - Nothing")
    await invoke(bot.tree, interaction)
    assert interaction.sent[0].kind == "defer"
    assert interaction.sent[-1].ephemeral
    assert "no track matches 'Nobody - Nothing'" in interaction.sent[-1].text
    assert await _queue_cog(bot).queues.items(GUILD_ID) == []


async def test_add_autocompletes_from_the_library(bot: MoodBot) -> None:
    interaction = FakeInteraction.typing(bot, "queue add", focused="query", value="sti")
    await invoke(bot.tree, interaction)
    (sent,) = interaction.sent
    assert [(c.name, c.value) for c in sent.choices] == [("Calm Lake - Still Water", "track:7")]


async def test_queue_commands_refuse_direct_messages(bot: MoodBot) -> None:
    interaction = FakeInteraction.slash(bot, "queue list", guild_id=None)
    await invoke(bot.tree, interaction)
    assert interaction.sent[0].ephemeral
    assert interaction.sent[0].text == "This command works in servers only."


async def test_list_shows_current_waiting_moods_and_who_asked(bot: MoodBot) -> None:
    empty = FakeInteraction.slash(bot, "queue list")
    await invoke(bot.tree, empty)
    assert "The queue is empty" in empty.sent[0].text
    cog = _queue_cog(bot)
    await cog.enqueue(GUILD_ID, 31, [1, 5])
    await cog.queues.add(GUILD_ID, AUTO_DJ, [8])
    interaction = FakeInteraction.slash(bot, "queue list")
    await invoke(bot.tree, interaction)
    lines = (interaction.sent[0].embed.description or "").splitlines()
    assert lines[0] == "**Now:** 😄 **The Brights - Sunny Day** · 3:20 · <@31>"
    assert lines[1] == "` 1.` 😢 **Grey Skies - Rainy Window** · 3:20 · <@31>"
    assert lines[2].endswith("**The Brights - Slow Morning** · 3:20 · auto-DJ")
    assert interaction.sent[0].embed.footer.text == "2 waiting · 10:00 listed"


async def test_skip_is_for_who_queued_it_or_a_manager(bot: MoodBot) -> None:
    await _queue_cog(bot).enqueue(GUILD_ID, 41, [1, 2])
    stranger = FakeInteraction.slash(bot, "queue skip", user_id=42)
    await invoke(bot.tree, stranger)
    assert stranger.sent[0].ephemeral and "Only who queued" in stranger.sent[0].text
    owner = FakeInteraction.slash(bot, "queue skip", user_id=41)
    await invoke(bot.tree, owner)
    assert owner.sent[0].text == ("Skipped **The Brights - Sunny Day**. Now playing **Joy "
                                     "Band - Happy Hour**.")
    manager = FakeInteraction.slash(bot, "queue skip", user_id=43, permissions=MANAGER)
    await invoke(bot.tree, manager)
    assert manager.sent[0].text.endswith("The queue is empty.")
    nothing = FakeInteraction.slash(bot, "queue skip", user_id=41)
    await invoke(bot.tree, nothing)
    assert nothing.sent[0].text == "Nothing is playing."


async def test_remove_and_clear_respect_whose_tracks_they_are(bot: MoodBot) -> None:
    cog = _queue_cog(bot)
    await cog.enqueue(GUILD_ID, 51, [1, 2])
    await cog.enqueue(GUILD_ID, 52, [3])
    refused = FakeInteraction.slash(bot, "queue remove", position=1, user_id=52)
    await invoke(bot.tree, refused)
    assert "Only who queued **Joy Band - Happy Hour**" in refused.sent[0].text
    own = FakeInteraction.slash(bot, "queue remove", position=2, user_id=52)
    await invoke(bot.tree, own)
    assert own.sent[0].text == "Removed **Thunder - Storm Warning** from the queue."
    beyond = FakeInteraction.slash(bot, "queue remove", position=9, user_id=51)
    await invoke(bot.tree, beyond)
    assert beyond.sent[0].text == "no track at position 9 (positions 1 to 1)"
    clear = FakeInteraction.slash(bot, "queue clear", user_id=52)
    await invoke(bot.tree, clear)
    assert "needs the Manage Server permission" in clear.sent[0].text
    clear = FakeInteraction.slash(bot, "queue clear", user_id=53, permissions=MANAGER)
    await invoke(bot.tree, clear)
    assert clear.sent[0].text == "Cleared 1 waiting track."
    assert [i.track_id for i in await cog.queues.items(GUILD_ID)] == [1]


async def test_join_needs_the_caller_in_a_voice_channel(bot: MoodBot) -> None:
    interaction = FakeInteraction.slash(bot, "queue join")
    await invoke(bot.tree, interaction)
    assert interaction.sent[0].text == "Join a voice channel first, then ask again."
    leave = FakeInteraction.slash(bot, "queue leave")
    await invoke(bot.tree, leave)
    assert leave.sent[0].text == "I am not in a voice channel of this server."


async def test_queue_cooldown_per_user(bot: MoodBot) -> None:
    for _ in range(3):
        await invoke(bot.tree, FakeInteraction.slash(bot, "queue list", user_id=61))
    fourth = FakeInteraction.slash(bot, "queue list", user_id=61)
    await invoke(bot.tree, fourth)
    assert fourth.sent[0].text.startswith("Easy there")
    other = FakeInteraction.slash(bot, "queue list", user_id=62)
    await invoke(bot.tree, other)
    assert not other.sent[0].text.startswith("Easy there")


# --- the listener: classify ahead, auto-suggest, auto-DJ -------------------------------------


class Posts(list[dict[str, Any]]):
    """What the cog posted in channels."""

    async def send(self, channel_id: int, **message: Any) -> None:
        self.append({"channel": channel_id, **message})


async def test_auto_suggest_posts_now_playing_with_three_add_buttons(bot: MoodBot) -> None:
    cog = _queue_cog(bot)
    posts = Posts()
    cog.send = posts.send  # type: ignore[method-assign]
    await bot.guild_settings.update(GUILD_ID, auto_suggest=True, suggest_channel_id=900)
    await cog.enqueue(GUILD_ID, 71, [7])  # calm
    await _settle(lambda: bool(posts))
    (post,) = posts
    assert post["channel"] == 900
    embed = post["embed"]
    assert embed.title == "Now playing: Calm Lake - Still Water"
    fits = next(f for f in embed.fields if f.name == "Fits next")
    assert len(fits.value.splitlines()) == 3 and "Slow Morning" in fits.value
    view = post["view"]
    assert type(view).__name__ == SuggestionsView.__name__ and len(view.children) == 3
    pressed = await click(view, view.children[0], user_id=72)
    assert pressed.sent[0].text.startswith("Queued **")
    assert len(await cog.queues.items(GUILD_ID)) == 2


async def test_nothing_is_posted_without_a_channel_or_the_setting(bot: MoodBot) -> None:
    cog = _queue_cog(bot)
    posts = Posts()
    cog.send = posts.send  # type: ignore[method-assign]
    await bot.guild_settings.update(GUILD_ID, auto_suggest=True)  # no channel
    await cog.enqueue(GUILD_ID, 71, [7])
    await bot.guild_settings.update(GUILD_ID + 1, suggest_channel_id=5)  # no auto-suggest
    await cog.enqueue(GUILD_ID + 1, 71, [7])
    await _settle(rounds=30)
    assert posts == []


async def test_auto_dj_keeps_the_queue_from_running_dry(bot: MoodBot) -> None:
    cog = _queue_cog(bot)
    posts = Posts()
    cog.send = posts.send  # type: ignore[method-assign]
    await bot.guild_settings.update(GUILD_ID, auto_dj=True, suggest_channel_id=901)

    async def waiting() -> list[Any]:
        return [i for i in await cog.queues.items(GUILD_ID) if not i.playing]

    await cog.enqueue(GUILD_ID, 81, [5])  # sad
    for _ in range(200):
        if len(await waiting()) >= KEEP:
            break
        await asyncio.sleep(0.01)
    added = await waiting()
    assert len(added) == KEEP and all(i.requested_by == AUTO_DJ for i in added)
    assert added[0].track_id == 6  # the other sad track fits best
    await _settle(lambda: len(posts) >= KEEP)
    assert all(p["content"].startswith("🎧 Auto-DJ queued") for p in posts)


async def test_a_restarted_bot_picks_up_its_guilds(bot: MoodBot) -> None:
    cog = _queue_cog(bot)
    await cog.queues.add(GUILD_ID, "1", [1, 2])  # queued without the cog: nobody follows
    assert GUILD_ID not in cog._followers
    await bot.reload_extension("bot.discord.cogs.queue")
    assert GUILD_ID in _queue_cog(bot)._followers


# --- voice playback ----------------------------------------------------------------------------


class StandInVoice:
    """A voice client that plays nothing: it records what it was asked to play."""

    def __init__(self) -> None:
        self.played: list[str] = []
        self.after: Callable[[Exception | None], Any] | None = None
        self.playing = False

    def play(self, source: Any, *, after: Callable[[Exception | None], Any] | None = None
             ) -> None:
        assert not self.playing, "discord.py refuses to play over audio"
        self.played.append(source)
        self.after, self.playing = after, True

    def stop(self) -> None:
        if self.playing:
            self.playing = False
            assert self.after is not None
            self.after(None)

    def finish(self) -> None:
        """The track played to its end."""
        self.playing = False
        assert self.after is not None
        self.after(None)

    def is_playing(self) -> bool:
        return self.playing

    def is_paused(self) -> bool:
        return False


async def test_voice_plays_the_queue_advances_and_follows_skips(
        service: MoodService, tmp_path: Path) -> None:
    tracks = _tracks(service)
    files = {}
    for track_id in (1, 3, 4):  # local tracks of the library (see moodlib.SONGS)
        location = Path(await tracks.location(track_id))
        files[track_id] = tmp_path / location.name
        files[track_id].write_bytes(b"audio")
    tracks.audio = _stand_in_audio(files)
    queues = GuildQueues(service, tracks)
    voice = StandInVoice()
    playback = VoicePlayback(queues, tracks, GUILD_ID, voice,
                             audio=lambda path: f"audio of {Path(path).name}")  # type: ignore
    runner = asyncio.create_task(playback.run())
    await queues.add(GUILD_ID, "1", [1, 3, 4])
    await _settle(lambda: voice.played == [f"audio of {files[1].name}"])

    voice.finish()  # track 1 ended: the queue moves on, voice plays track 3
    await _settle(lambda: len(voice.played) == 2)
    assert voice.played[-1] == f"audio of {files[3].name}"
    assert [i.track_id for i in await queues.items(GUILD_ID)] == [3, 4]

    await queues.advance(GUILD_ID, skipped=True)  # /queue skip: voice follows
    await _settle(lambda: len(voice.played) == 3)
    assert voice.played[-1] == f"audio of {files[4].name}"
    assert [i.track_id for i in await queues.items(GUILD_ID)] == [4]  # the stop did not skip 4

    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert not voice.playing


async def test_voice_skips_a_track_it_cannot_play(service: MoodService, tmp_path: Path) -> None:
    tracks = _tracks(service)
    good = tmp_path / "good.mp3"
    good.write_bytes(b"audio")
    tracks.audio = _stand_in_audio({2: good})
    queues = GuildQueues(service, tracks)
    voice = StandInVoice()
    playback = VoicePlayback(queues, tracks, GUILD_ID, voice,
                             audio=lambda path: f"audio of {Path(path).name}")  # type: ignore
    await queues.add(GUILD_ID, "1", [1, 2])  # track 1 has no audio
    await playback.sync()
    assert voice.played == []
    await playback.sync()  # the skip moved the queue to track 2
    assert voice.played == ["audio of good.mp3"]


# --- helpers -----------------------------------------------------------------------------------


def _tracks(service: MoodService) -> Any:
    from bot.service.tracks import StoredTracks

    return StoredTracks(service)


def _stand_in_audio(files: dict[int, Path]) -> Any:
    async def audio(track_id: int) -> str:
        if track_id not in files:
            raise ServiceError(f"track {track_id} has no audio here")
        return str(files[track_id])
    return audio



async def test_a_locked_database_is_one_line_and_the_queue_is_unchanged(
        library_db: Path, tmp_path: Path) -> None:
    """Another program holding SQLite's write lock past the busy timeout: /queue add and a
    guild setting say so in one ServiceError; nothing is queued or changed."""
    import shutil
    import sqlite3

    from bot.discord.guilds import GuildSettings
    from bot.storage.engine import create_engine, make_sessionmaker
    from bot.storage.store import Store

    path = tmp_path / "mood.db"
    shutil.copy(library_db, path)
    service = service_on(path)
    short = create_engine(f"sqlite+aiosqlite:///{path}", busy_timeout_ms=200)
    service.store = Store(make_sessionmaker(short))
    service._databases.append(short)
    async with service:
        queues = GuildQueues(service, _tracks(service))
        lock = sqlite3.connect(path, timeout=0, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(ServiceError, match=rf"^queue of guild {GUILD_ID}: the database "
                                                   "refused the write \\(database is locked"):
                await queues.add(GUILD_ID, "1", [3])
            with pytest.raises(ServiceError, match=r"^settings of guild 1: .*database is locked"):
                await GuildSettings(service).update(1, auto_dj=True)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert await queues.items(GUILD_ID) == []
        (added,) = await queues.add(GUILD_ID, "1", [3])  # the lock is gone: it goes through
        assert added.track_id == 3
