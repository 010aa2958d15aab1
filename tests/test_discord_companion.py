"""Companion mode: other music bots' announcements read and answered with the track's mood.

Messages are real :class:`discord.Message` objects built from the gateway's payloads (content
and embeds written as the bots write them: FredBoat, EvoBot, JMusicBot and Lavamusic from
their sources, the others as they look in a channel). The cog runs on the test bot
(``tests.fakes.discord_fixtures``) with its service on the stored eight-track library; only
Discord's HTTP API is replaced, by :class:`FakeDiscord`, which records the requests discord.py
makes (reactions, threads, messages) and refuses those a test forbids.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
from collections.abc import Sequence
from typing import Any

import discord
import pytest
from sqlalchemy import select

from bot.discord.bot import MoodBot
from bot.discord.cogs.companion import Companion
from bot.discord.companion import (
    NOW_PLAYING,
    QUEUED,
    Announcement,
    clean_title,
    music_link,
    parse_announcement,
)
from bot.service import ServiceError
from bot.settings import DiscordSettings
from bot.storage.models import TrackEvent
from tests.fakes.discord_fixtures import (  # noqa: F401  (SQLite and PostgreSQL)
    service_on_both_backends,
)
from tests.fakes.interactions import APPLICATION_ID, GUILD_ID, log_in

MUSIC_BOT = 200_000_000_000_000_001
PERSON = 200_000_000_000_000_002
COMPANION_CHANNEL = 300_000_000_000_000_001
OTHER_CHANNEL = 300_000_000_000_000_002
THREAD = 300_000_000_000_000_003
MENTION = "<@123456789012345678>"
_ids = itertools.count(900_000_000_000_000_000)


# --- real messages from gateway payloads ----------------------------------------------------


def _user(user_id: int, *, bot: bool = True) -> dict[str, Any]:
    return {"id": str(user_id), "username": f"user{user_id}", "discriminator": "0",
            "global_name": None, "avatar": None, "bot": bot}


def _channel(state: Any, channel_id: int = COMPANION_CHANNEL) -> discord.TextChannel:
    guild = state._get_or_create_unavailable_guild(GUILD_ID)
    return discord.TextChannel(state=state, guild=guild, data={  # type: ignore[arg-type]
        "id": str(channel_id), "type": 0, "name": "music", "position": 0,
        "permission_overwrites": [], "nsfw": False, "parent_id": None})


def _thread(state: Any, parent_id: int = COMPANION_CHANNEL) -> discord.Thread:
    guild = state._get_or_create_unavailable_guild(GUILD_ID)
    payload: Any = _thread_payload(THREAD, parent_id, "requests", 1440)
    return discord.Thread(guild=guild, state=state, data=payload)


def _thread_payload(thread_id: int, parent_id: int, name: str,
                    archive_after: int) -> dict[str, Any]:
    return {"id": str(thread_id), "parent_id": str(parent_id), "owner_id": str(APPLICATION_ID),
            "name": name, "type": 11, "guild_id": str(GUILD_ID), "message_count": 0,
            "member_count": 1, "rate_limit_per_user": 0,
            "thread_metadata": {"archived": False, "auto_archive_duration": archive_after,
                                "archive_timestamp": "2024-01-01T00:00:00+00:00",
                                "locked": False}}


def message(state: Any, content: str = "", embeds: Sequence[dict[str, Any]] = (), *,
            channel: discord.abc.MessageableChannel | None = None, author: int = MUSIC_BOT,
            bot: bool = True, message_id: int | None = None,
            reactions: Sequence[str] = ()) -> discord.Message:
    """A message as the gateway delivers it (``embeds`` as Discord's embed objects;
    ``reactions``: emoji the bot itself reacted with)."""
    channel = channel if channel is not None else _channel(state)
    data: Any = {
        "id": str(message_id if message_id is not None else next(_ids)),
        "channel_id": str(channel.id), "guild_id": str(GUILD_ID),
        "author": _user(author, bot=bot), "content": content,
        "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None, "tts": False,
        "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": [{"type": "rich", **embed} for embed in embeds], "pinned": False, "type": 0,
        "reactions": [{"emoji": {"id": None, "name": emoji}, "count": 1, "me": True}
                      for emoji in reactions]}
    return discord.Message(state=state, channel=channel, data=data)


@pytest.fixture(scope="module")
def state() -> Any:
    """A logged-in client's connection state, for messages that only get parsed."""
    client = discord.Client(intents=discord.Intents.default())
    log_in(client)
    return client._connection


# --- parsing: the bots' announcements ---------------------------------------------------------

RICK = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"

ANNOUNCEMENTS: list[tuple[str, str, list[dict[str, Any]], Announcement]] = [
    ("FredBoat now playing",
     "Now playing **Rick Astley - Never Gonna Give You Up (Official Music Video)**. "
     "Requested by: **alice**.", [],
     Announcement(NOW_PLAYING, "Never Gonna Give You Up", "Rick Astley")),
    ("FredBoat queued",
     "**Daft Punk - Get Lucky (Official Audio) ft. Pharrell Williams, Nile Rodgers** has been "
     "added to the queue.", [],
     Announcement(QUEUED, "Get Lucky", "Daft Punk")),
    ("FredBoat plays at once", "**Toto - Africa** will now play.", [],
     Announcement(NOW_PLAYING, "Africa", "Toto")),
    ("EvoBot started playing",
     "🎶 Started playing: **Rick Astley - Never Gonna Give You Up (Official Music Video)** "
     f"{RICK}&list=RDdQw4w9WgXcQ&start_radio=1", [],
     Announcement(NOW_PLAYING, "Never Gonna Give You Up", "Rick Astley", RICK)),
    ("EvoBot queued", f"✅ **Mr. Blue Sky** has been added to the queue by {MENTION}", [],
     Announcement(QUEUED, "Mr. Blue Sky")),
    ("JMusicBot now playing (embed, uploader in the footer)",
     "🎶 **Now Playing in <#123456789012345678>...**",
     [{"author": {"name": "alice"}, "title": "Never Gonna Give You Up", "url": RICK,
       "description": "⏸ 🔘▬▬▬▬▬▬▬▬▬▬ `[0:05/3:33]` 🔊",
       "footer": {"text": "Source: Rick Astley"}}],
     Announcement(NOW_PLAYING, "Never Gonna Give You Up", "Rick Astley", RICK)),
    ("JMusicBot added",
     "🎶 Added **Queen - Bohemian Rhapsody (Official Video Remastered)** (`05:59`) to the "
     "queue at position 2", [],
     Announcement(QUEUED, "Bohemian Rhapsody", "Queen")),
    ("Lavamusic track start (Spotify, artist field)", "",
     [{"author": {"name": "Now Playing"},
       "description": "**[Blinding Lights](https://open.spotify.com/intl-de/track/"
                      "0VjIjW4GlUZAMYd2vXMi3b?si=4f2a)**",
       "footer": {"text": "Requested by alice"},
       "fields": [{"name": "Duration", "value": "`3:20`", "inline": True},
                  {"name": "Author", "value": "The Weeknd", "inline": True}]}],
     Announcement(NOW_PLAYING, "Blinding Lights", "The Weeknd",
                  "https://open.spotify.com/track/0VjIjW4GlUZAMYd2vXMi3b")),
    ("Lavamusic added (Deezer)", "",
     [{"description": "Added [Levitating](https://www.deezer.com/fr/track/1209267742) to the "
                      "queue."}],
     Announcement(QUEUED, "Levitating", "", "https://www.deezer.com/track/1209267742")),
    ("Rythm, classic text", "**Playing** 🎶 `Toto - Africa (Official HD Video)` - Now!", [],
     Announcement(NOW_PLAYING, "Africa", "Toto")),
    ("Rythm, added to queue embed", "",
     [{"author": {"name": "Added to queue"},
       "title": "a-ha - Take On Me (Official Video) [Remastered in 4K]",
       "url": "https://www.youtube.com/watch?v=djV11Xbc914",
       "fields": [{"name": "Channel", "value": "a-ha"},
                  {"name": "Song Duration", "value": "4:05"},
                  {"name": "Estimated time until playing", "value": "3:20"},
                  {"name": "Position in queue", "value": "1"}]}],
     Announcement(QUEUED, "Take On Me", "a-ha", "https://www.youtube.com/watch?v=djV11Xbc914")),
    ("Rythm-style link", "Now Playing 🎶 **[Darude - Sandstorm](https://youtu.be/y6120QOlsfU)**",
     [], Announcement(NOW_PLAYING, "Sandstorm", "Darude",
                      "https://www.youtube.com/watch?v=y6120QOlsfU")),
    ("Jockie Music (custom emoji, by)", "",
     [{"description": "<:jockiemusic:987654321098765432> Started playing **Mr. Brightside** by "
                      "**The Killers**"}],
     Announcement(NOW_PLAYING, "Mr. Brightside", "The Killers")),
    ("Hydra (link, by, duration)", "",
     [{"title": "Now playing",
       "description": "**[bad guy](https://open.spotify.com/track/2Fxmhks0bxGSBdJ92vM42m)** by "
                      f"**Billie Eilish** `[3:14]` • {MENTION}"}],
     Announcement(NOW_PLAYING, "bad guy", "Billie Eilish",
                  "https://open.spotify.com/track/2Fxmhks0bxGSBdJ92vM42m")),
    ("Green-bot (SoundCloud, bold link text)", "",
     [{"author": {"name": "Now playing"},
       "description": "[**Smells Like Teen Spirit**](https://soundcloud.com/nirvana/smells-like-"
                      f"teen-spirit?utm_source=x) by **Nirvana** • Requested by {MENTION}"}],
     Announcement(NOW_PLAYING, "Smells Like Teen Spirit", "Nirvana",
                  "https://soundcloud.com/nirvana/smells-like-teen-spirit")),
    ("Chip (queue embed)", "",
     [{"title": "Added to the queue",
       "description": "[Coldplay - Yellow (Official Video)](https://youtu.be/yKNxeF4KMsY?si=ab) "
                      "`[4:29]`"}],
     Announcement(QUEUED, "Yellow", "Coldplay", "https://www.youtube.com/watch?v=yKNxeF4KMsY")),
    ("Vexera (plain, duration, requester)",
     "🎶 Now playing: **Adele - Hello** (6:07) - requested by bob", [],
     Announcement(NOW_PLAYING, "Hello", "Adele")),
    ("a Lavalink bot's plain line", "🎶 Now playing: Kate Bush - Running Up That Hill [4:58]",
     [], Announcement(NOW_PLAYING, "Running Up That Hill", "Kate Bush")),
    ("MusicBot (Just-Some-Bots), channel named first",
     "Now playing in `General`: **Coldplay - Viva La Vida** added by **alice**", [],
     Announcement(NOW_PLAYING, "Viva La Vida", "Coldplay")),
    ("a VEVO channel as the uploader", "",
     [{"author": {"name": "Now Playing"}, "title": "Get Lucky (Official Audio)",
       "url": "https://music.youtube.com/watch?v=5NV6Rdv1a3I&feature=share",
       "fields": [{"name": "Uploader", "value": "DaftPunkVEVO"}]}],
     Announcement(NOW_PLAYING, "Get Lucky", "Daft Punk",
                  "https://www.youtube.com/watch?v=5NV6Rdv1a3I")),
    ("a title with 'nothing' in it", "**Nothing Compares 2 U** is now playing", [],
     Announcement(NOW_PLAYING, "Nothing Compares 2 U")),
]


@pytest.mark.parametrize(("content", "embeds", "expected"),
                         [case[1:] for case in ANNOUNCEMENTS],
                         ids=[case[0] for case in ANNOUNCEMENTS])
def test_announcements_of_music_bots_are_read(state: Any, content: str,
                                              embeds: list[dict[str, Any]],
                                              expected: Announcement) -> None:
    assert parse_announcement(message(state, content, embeds)) == expected


NOT_ANNOUNCEMENTS: list[tuple[str, str, list[dict[str, Any]]]] = [
    ("JMusicBot, nothing playing", "🎶 **Now Playing...**",
     [{"title": "No music playing", "description": "⏹ 🔘▬▬▬▬▬▬▬▬▬▬ 🔊"}]),
    ("FredBoat playlist", "Found and added `12` songs from playlist **Chill Vibes**.", []),
    ("Lavamusic playlist", "", [{"description": "Added 12 songs to the queue."}]),
    ("EvoBot playlist", f"{MENTION} Started a playlist", []),
    ("a help embed", "",
     [{"title": "Music commands",
       "description": "`!play <song>` — play a song or add it to the queue\n"
                      "`!np` — shows what is now playing\n`!queue` — the queue"}]),
    ("a queue listing", "",
     [{"title": "Queue", "description": "Now playing: [Sandstorm](https://youtu.be/y6120QOlsfU)"
                                        "\n1. [Africa](https://youtu.be/FTQbiNvZqaY)\n"
                                        "2. [Hello](https://youtu.be/YQHsXMglC9A)"}]),
    ("queue ended", "❌ Music queue ended.", []),
    ("skipped", f"{MENTION} ⏭ skipped the song", []),
    ("removed", f"{MENTION} ❌ removed **Africa** from the queue.", []),
    ("no results", "❌ No results found for **asdfgh**", []),
    ("nothing, literally", "Now playing: nothing", []),
    ("chat", "hello there, anyone up for a game?", []),
    ("an empty message (no content intent)", "", []),
]


@pytest.mark.parametrize(("content", "embeds"), [case[1:] for case in NOT_ANNOUNCEMENTS],
                         ids=[case[0] for case in NOT_ANNOUNCEMENTS])
def test_other_messages_announce_nothing(state: Any, content: str,
                                         embeds: list[dict[str, Any]]) -> None:
    assert parse_announcement(message(state, content, embeds)) is None


@pytest.mark.parametrize(("url", "expected"), [
    (f"{RICK}&list=RDdQw4w9WgXcQ&index=2", RICK),
    ("https://youtu.be/dQw4w9WgXcQ?si=x", RICK),
    ("https://www.youtube.com/shorts/dQw4w9WgXcQ", RICK),
    ("https://m.youtube.com/watch?v=dQw4w9WgXcQ", RICK),
    ("https://open.spotify.com/track/0VjIjW4GlUZAMYd2vXMi3b",
     "https://open.spotify.com/track/0VjIjW4GlUZAMYd2vXMi3b"),
    ("https://www.deezer.com/en/track/3135556", "https://www.deezer.com/track/3135556"),
    ("https://soundcloud.com/nirvana/smells-like-teen-spirit",
     "https://soundcloud.com/nirvana/smells-like-teen-spirit"),
    ("https://soundcloud.com/nirvana/sets", None),
    ("https://open.spotify.com/playlist/37i9dQZF1DXcBWIGoYBM5M", None),
    ("https://www.youtube.com/playlist?list=PL123", None),
    ("http://127.0.0.1/track.mp3", None),
    ("http://192.168.1.10:8080/watch?v=dQw4w9WgXcQ", None),
    ("https://user:secret@www.youtube.com/watch?v=dQw4w9WgXcQ", None),
    ("javascript:alert(1)", None),
    ("https://discord.com/users/123", None),
])
def test_only_track_pages_of_the_music_services_are_followed(url: str,
                                                             expected: str | None) -> None:
    assert music_link(url) == expected


def test_the_service_gets_the_link_first_then_the_name() -> None:
    linked = Announcement(NOW_PLAYING, "Africa", "Toto", "https://youtu.be/x")
    assert linked.queries == ("https://youtu.be/x", "Toto - Africa")
    assert Announcement(QUEUED, "Africa").queries == ("Africa",)
    assert "name:toto africa" in linked.keys and "link:https://youtu.be/x" in linked.keys


@pytest.mark.parametrize(("title", "clean"), [
    ("Get Lucky (Official Audio) ft. Pharrell Williams", "Get Lucky"),
    ("Take On Me [Remastered in 4K]", "Take On Me"),
    ("Yellow | Official Video", "Yellow"),
    ("Heroes - 2017 Remaster", "Heroes"),
    ("Fête de la Musique", "Fête de la Musique"),
    ("(Intro)", "(Intro)"),
])
def test_titles_lose_their_decorations(title: str, clean: str) -> None:
    assert clean_title(title) == clean


# --- the cog on the test bot --------------------------------------------------------------------


class _Refusal:
    status = 403
    reason = "Forbidden"


class FakeDiscord:
    """Discord's HTTP API as far as companion mode uses it: records requests, refuses the
    ones named in ``forbid`` (``react``, ``thread``, ``send``) with 403 Missing Permissions."""

    def __init__(self, bot: MoodBot, monkeypatch: pytest.MonkeyPatch,
                 forbid: Sequence[str] = ()) -> None:
        self.calls: list[tuple[str, int, str]] = []
        self.forbid = set(forbid)
        for name in ("add_reaction", "remove_own_reaction", "start_thread_with_message",
                     "send_message"):
            monkeypatch.setattr(bot.http, name, getattr(self, name))

    def _check(self, what: str) -> None:
        if what in self.forbid:
            raise discord.Forbidden(_Refusal(),  # type: ignore[arg-type]
                                    {"code": 50013, "message": "Missing Permissions"})

    def of(self, kind: str) -> list[tuple[str, int, str]]:
        return [call for call in self.calls if call[0] == kind]

    async def add_reaction(self, channel_id: int, message_id: int, emoji: str) -> None:
        self._check("react")
        self.calls.append(("react", int(message_id), emoji))

    async def remove_own_reaction(self, channel_id: int, message_id: int, emoji: str) -> None:
        self.calls.append(("unreact", int(message_id), emoji))

    async def start_thread_with_message(self, channel_id: int, message_id: int, *, name: str,
                                        auto_archive_duration: int, **_: Any) -> dict[str, Any]:
        self._check("thread")
        self.calls.append(("thread", int(message_id), name))
        return _thread_payload(int(message_id), int(channel_id), name, auto_archive_duration)

    async def send_message(self, channel_id: int, *, params: Any) -> dict[str, Any]:
        self._check("send")
        payload = params.payload
        reference = payload.get("message_reference")
        self.calls.append(("reply" if reference else "send", int(channel_id),
                           payload.get("content", "")))
        return {"id": str(next(_ids)), "channel_id": str(channel_id),
                "author": _user(APPLICATION_ID), "content": payload.get("content", ""),
                "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None,
                "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [],
                "attachments": [], "embeds": [], "pinned": False, "type": 0}


@pytest.fixture
async def companion(bot: MoodBot) -> Companion:
    """The loaded cog, with the companion channel set in the test guild.

    (``load_extension`` executes the module afresh: its class is not the one imported here.)
    """
    await bot.guild_settings.update(GUILD_ID, companion_channel_id=COMPANION_CHANNEL)
    cog = bot.get_cog("Companion")
    assert cog is not None and type(cog).__qualname__ == Companion.__qualname__
    return cog  # type: ignore[return-value]


async def _played(bot: MoodBot) -> list[int]:
    async with bot.service.store.sessions() as session:
        rows = await session.scalars(select(TrackEvent.track_id).where(
            TrackEvent.scope == f"discord:{GUILD_ID}", TrackEvent.kind == "played"))
        return list(rows)


SUNNY = "🎶 Now playing: **The Brights - Sunny Day (Official Video)** (3:20)"


async def test_an_announcement_gets_its_mood_as_a_reaction_and_in_a_thread(
        bot: MoodBot, companion: Companion, monkeypatch: pytest.MonkeyPatch) -> None:
    discord_api = FakeDiscord(bot, monkeypatch)
    announced = message(bot._connection, SUNNY)
    assert companion.on_message in [listener for _, listener in companion.get_listeners()]

    await companion.on_message(announced)

    assert discord_api.of("react") == [("react", announced.id, "😄")]
    [(_, thread_id, name)] = discord_api.of("thread")
    assert thread_id == announced.id and name == "😄 happy · The Brights - Sunny Day"
    [(_, channel, text)] = discord_api.of("send")
    assert channel == announced.id  # the thread made from the message has its id
    assert text.startswith("😄 **happy** (72% sure) · The Brights - Sunny Day")
    assert await _played(bot) == [1]


async def test_messages_elsewhere_from_people_or_from_itself_are_not_read(
        bot: MoodBot, companion: Companion, monkeypatch: pytest.MonkeyPatch) -> None:
    discord_api = FakeDiscord(bot, monkeypatch)
    state = bot._connection
    resolved: list[str] = []

    async def resolve(query: str) -> Any:
        resolved.append(query)
        raise AssertionError("nothing should be classified")

    monkeypatch.setattr(bot.tracks, "resolve", resolve)
    for ignored in (message(state, SUNNY, channel=_channel(state, OTHER_CHANNEL)),
                    message(state, SUNNY, author=PERSON, bot=False),
                    message(state, SUNNY, author=APPLICATION_ID)):
        await companion.on_message(ignored)
    await bot.guild_settings.update(GUILD_ID, companion_channel_id=None)
    await companion.on_message(message(state, SUNNY))
    assert discord_api.calls == [] and resolved == []


async def test_a_track_queued_then_playing_is_answered_once_and_recorded_when_it_plays(
        bot: MoodBot, companion: Companion, monkeypatch: pytest.MonkeyPatch) -> None:
    discord_api = FakeDiscord(bot, monkeypatch)
    state = bot._connection
    await companion.on_message(message(state, "✅ **Thunder - Storm Warning** has been added to "
                                              f"the queue by {MENTION}"))
    assert len(discord_api.of("react")) == 1 and await _played(bot) == []

    await companion.on_message(message(state, "🎶 Started playing: **Thunder - Storm Warning**"))
    await companion.on_message(message(state, "Now playing **Thunder - Storm Warning**."))
    assert [emoji for *_, emoji in discord_api.of("react")] == ["😬"]
    assert len(discord_api.of("thread")) == 1
    assert await _played(bot) == [3]


async def test_in_a_thread_of_the_channel_the_answer_is_a_reply(
        bot: MoodBot, companion: Companion, monkeypatch: pytest.MonkeyPatch) -> None:
    discord_api = FakeDiscord(bot, monkeypatch)
    announced = message(bot._connection, "Now playing **Grey Skies - Rainy Window**",
                        channel=_thread(bot._connection))
    await companion.on_message(announced)
    assert discord_api.of("react") == [("react", announced.id, "😢")]
    assert discord_api.of("thread") == []
    [(_, channel, text)] = discord_api.of("reply")
    assert channel == THREAD and "**sad**" in text


async def test_without_thread_permissions_it_replies(
        bot: MoodBot, companion: Companion, monkeypatch: pytest.MonkeyPatch) -> None:
    discord_api = FakeDiscord(bot, monkeypatch, forbid=["thread"])
    await companion.on_message(message(bot._connection, "Now playing **Calm Lake - Still Water**"))
    assert [emoji for *_, emoji in discord_api.of("react")] == ["😌"]
    [(_, channel, text)] = discord_api.of("reply")
    assert channel == COMPANION_CHANNEL and "**calm**" in text


async def test_without_send_permissions_the_reaction_alone_answers(
        bot: MoodBot, companion: Companion, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    discord_api = FakeDiscord(bot, monkeypatch, forbid=["thread", "send"])
    with caplog.at_level(logging.INFO, logger="bot.discord.cogs.companion"):
        await companion.on_message(message(bot._connection, "Now playing **Sirens - Red Alert**"))
    assert discord_api.calls == [("react", discord_api.calls[0][1], "😬")]
    assert any("the reaction says it" in r.getMessage() for r in caplog.records)
    assert await _played(bot) == [4]  # heard all the same

    refused = FakeDiscord(bot, monkeypatch, forbid=["react", "thread", "send"])
    await companion.on_message(message(bot._connection, "Now playing **Sad Songs - Lost Letters**"))
    assert refused.calls == []  # nothing allowed, nothing raised


async def test_an_unknown_track_is_tried_by_link_then_by_name_and_not_answered(
        bot: MoodBot, companion: Companion, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    discord_api = FakeDiscord(bot, monkeypatch)
    unknown = f"🎶 Started playing: **Nobody - Unknown Song** {RICK}&list=RD1"
    with caplog.at_level(logging.INFO, logger="bot.discord.cogs.companion"):
        await companion.on_message(message(bot._connection, unknown))
    assert bot.service.resolver.queries == [RICK, "Nobody - Unknown Song"]  # type: ignore[attr-defined]
    assert discord_api.calls == []
    assert any("no mood for 'Nobody - Unknown Song'" in r.getMessage() for r in caplog.records)

    await companion.on_message(message(bot._connection, unknown))  # not tried again at once
    assert len(bot.service.resolver.queries) == 2  # type: ignore[attr-defined]


async def test_a_bug_while_classifying_is_logged_not_raised(
        bot: MoodBot, companion: Companion, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    discord_api = FakeDiscord(bot, monkeypatch)

    async def broken(query: str) -> Any:
        raise RuntimeError("the pool died")

    monkeypatch.setattr(bot.tracks, "resolve", broken)
    with caplog.at_level(logging.ERROR, logger="bot.discord.cogs.companion"):
        await companion.on_message(message(bot._connection, SUNNY))
    [record] = [r for r in caplog.records if r.name == "bot.discord.cogs.companion"]
    assert "companion mode failed" in record.getMessage() and record.exc_info is not None
    assert discord_api.calls == []


async def test_an_edited_message_is_answered_only_for_another_track(
        bot: MoodBot, companion: Companion, monkeypatch: pytest.MonkeyPatch) -> None:
    discord_api = FakeDiscord(bot, monkeypatch)
    state = bot._connection
    player = [{"author": {"name": "Now playing"}, "title": "The Brights - Sunny Day",
               "description": "▶ 🔘▬▬▬▬▬▬ `[0:05/3:20]`"}]
    first = message(state, "", player, message_id=4242)
    await companion.on_message(first)
    assert [emoji for *_, emoji in discord_api.of("react")] == ["😄"]

    later = [{**player[0], "description": "▶ ▬▬▬🔘▬▬▬ `[1:40/3:20]`"}]
    moved = message(state, "", later, message_id=4242, reactions=["😄"])
    await companion.on_message_edit(first, moved)
    assert len(discord_api.calls) == 3  # react, thread, send: the progress bar moved

    next_track = [{**player[0], "title": "Thunder - Storm Warning"}]
    await companion.on_message_edit(moved, message(state, "", next_track, message_id=4242,
                                                   reactions=["😄"]))
    assert ("unreact", 4242, "😄") in discord_api.calls
    assert discord_api.of("react")[-1] == ("react", 4242, "😬")


async def test_classifications_are_bounded_per_guild(
        bot: MoodBot, companion: Companion, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeDiscord(bot, monkeypatch)
    monkeypatch.setattr(sys.modules[type(companion).__module__], "MAX_WAITING", 1)
    mood = await bot.tracks.mood(1)
    gate = asyncio.Event()
    running: list[str] = []
    most = 0
    classified: list[str] = []

    async def resolve(query: str) -> Any:
        nonlocal most
        running.append(query)
        most = max(most, len(running))
        await gate.wait()
        running.remove(query)
        classified.append(query)
        return mood

    monkeypatch.setattr(bot.tracks, "resolve", resolve)
    songs = [f"Now playing **Band {i} - Song {i}**" for i in range(4)]
    tasks = [asyncio.create_task(companion.on_message(message(bot._connection, s)))
             for s in songs]
    async def settled() -> None:
        while not (len(running) == 2 and sum(task.done() for task in tasks) == 1):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(settled(), timeout=10)  # two running, one waiting, one dropped
    gate.set()
    await asyncio.gather(*tasks)
    assert most == 2 and len(classified) == 3


async def test_without_the_content_intent_it_says_so_once(
        bot: MoodBot, companion: Companion, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    discord_api = FakeDiscord(bot, monkeypatch)
    assert not bot.intents.message_content  # the test bot runs as configured by default
    with caplog.at_level(logging.WARNING, logger="bot.discord.cogs.companion"):
        for _ in range(2):
            await companion.on_message(message(bot._connection, ""))
    warnings = [r.getMessage() for r in caplog.records if r.name == "bot.discord.cogs.companion"]
    assert len(warnings) == 1 and "MER_DISCORD_COMPANION=true" in warnings[0]
    assert discord_api.calls == []


async def test_a_refused_history_write_is_logged(
        bot: MoodBot, companion: Companion, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    discord_api = FakeDiscord(bot, monkeypatch)

    async def refuse(scope: str, track_ids: Sequence[int]) -> None:
        raise ServiceError("database is locked")

    monkeypatch.setattr(bot.service.recommendations, "played", refuse)
    with caplog.at_level(logging.WARNING, logger="bot.discord.cogs.companion"):
        await companion.on_message(message(bot._connection, SUNNY))
    assert len(discord_api.of("react")) == 1  # answered all the same
    assert any("could not record" in r.getMessage() for r in caplog.records)


# --- the intent ---------------------------------------------------------------------------------


async def test_the_content_intent_is_asked_for_only_in_companion_mode(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with MoodBot(None) as plain, MoodBot(None, companion=True) as reading:
        assert not plain.intents.message_content
        assert reading.intents.message_content
        assert reading.intents.guild_messages and not reading.intents.members
    assert DiscordSettings(_env_file=None).discord_companion is False  # type: ignore[call-arg]
    monkeypatch.setenv("MER_DISCORD_COMPANION", "true")
    assert DiscordSettings(_env_file=None).discord_companion is True  # type: ignore[call-arg]
