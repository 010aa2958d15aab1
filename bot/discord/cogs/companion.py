"""Companion mode: the mood of what another music bot plays, in the channel an admin named.

In a guild whose settings name a companion channel (``/mood-admin settings
companion_channel``), every message another bot posts there (or in a thread of it) is read
(:func:`bot.discord.companion.parse_announcement`); for a "now playing" or "added to queue"
announcement the track is classified through the service and the message gets the mood's
emoji as a reaction and one short line in a thread on it. When the bot may not create threads
there it replies under the message, and when it may not send messages either the reaction
alone says it.

- The same track (by link or by name) is answered once per guild within
  :data:`DEDUPE_S`: bots announce a track when it is queued and again when it starts, and
  edit their now-playing message as it plays.
- A track of the stored library (same artist and title) is answered from the database;
  anything else is classified by its link (YouTube, Spotify, SoundCloud, Deezer), then by
  "Artist - Title". At most :data:`PER_GUILD` classifications run at once per guild, and
  :data:`MAX_WAITING` more wait; further announcements are dropped until they finish.
- "Now playing" announcements are recorded as played in the guild's history (scope
  ``discord:<guild id>``, as :func:`bot.discord.bot.history_scope`), so suggestions there
  avoid them and ``/mood stats`` counts them; a track merely queued is not (it may never
  play), until its own now-playing announcement comes.
- Edits: many bots edit their now-playing message in place, to move a progress bar or, for a
  player message, to show the next track. An edit is answered only when it announces another
  track than before (the old mood's reaction is then taken back), and only for messages
  discord.py still holds in its cache (``max_messages``); older ones are left alone.
- Failures (an unknown song, Discord refusing, a bug) are logged, never raised: the other
  bot's users never see a traceback, and an unknown song gets no answer at all.

Reading other bots' messages needs the privileged message-content intent, which the bot asks
for only with ``MER_DISCORD_COMPANION=true``; without it Discord sends those messages empty
and this cog says so in the log, once per guild.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import discord
from discord.ext import commands
from discord.utils import escape_markdown

from bot.discord.bot import MoodBot
from bot.discord.companion import NOW_PLAYING, Announcement, normal, parse_announcement
from bot.discord.render import EMOJI, shorten, track_name
from bot.service import ServiceError
from bot.service.tracks import MOODS, track_ref

if TYPE_CHECKING:
    from bot.service import TrackMood

logger = logging.getLogger(__name__)

#: Seconds during which the same track is not answered again in a guild.
DEDUPE_S: Final = 300.0
#: Classifications running at once per guild, and announcements waiting for one.
PER_GUILD: Final = 2
MAX_WAITING: Final = 8
#: Minutes before Discord hides an idle answer thread (its shortest choice).
THREAD_ARCHIVE_MIN: Final = 60
_THREAD_NAME_MAX = 100


@dataclass
class _Answered:
    """A track answered recently in a guild."""

    at: float
    track_id: int | None = None
    playing: bool = False
    recorded: bool = False


class Companion(commands.Cog):
    """Answers other music bots' announcements with the track's mood.

    Parameters
    ----------
    bot : MoodBot
        The bot; its service and guild settings are read when a message comes.
    """

    def __init__(self, bot: MoodBot) -> None:
        self.bot = bot
        self._answered: dict[int, dict[str, _Answered]] = {}
        self._limits: dict[int, asyncio.Semaphore] = {}
        self._waiting: Counter[int] = Counter()
        self._warned: set[int] = set()

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Answer a music bot's announcement in a companion channel."""
        await self._consider(message)

    @commands.Cog.listener()
    async def on_message_edit(self, before: discord.Message, after: discord.Message) -> None:
        """Answer an edited message when it now announces another track than before."""
        await self._consider(after, before=before)

    async def _consider(self, message: discord.Message, *,
                        before: discord.Message | None = None) -> None:
        guild = message.guild
        if guild is None or not self._from_another_bot(message):
            return
        try:
            channel_id = (await self.bot.guild_settings.get(guild.id)).companion_channel_id
            if channel_id is None or not _in_channel(message.channel, channel_id):
                return
            announcement = parse_announcement(message)
            if announcement is None:
                self._warn_without_content(message)
                return
            if before is not None:
                old = parse_announcement(before)
                if old is not None and old.keys & announcement.keys:
                    return  # a progress bar moved, or a link unfurled
            await self._answer(message, announcement, edited=before is not None)
        except Exception:  # a listener must not raise: log the bug, keep listening
            logger.exception("companion mode failed on message %s in guild %s", message.id,
                             guild.id)

    def _from_another_bot(self, message: discord.Message) -> bool:
        me = self.bot.user
        return (self.bot.has_service and message.author.bot
                and (me is None or message.author.id != me.id))

    def _warn_without_content(self, message: discord.Message) -> None:
        """Without the intent, Discord sends other bots' messages empty: say why, once."""
        if (self.bot.intents.message_content or message.content or message.embeds
                or message.guild is None or message.guild.id in self._warned):
            return
        self._warned.add(message.guild.id)
        logger.warning("companion mode in guild %s: Discord sends other bots' messages "
                       "without their content; set MER_DISCORD_COMPANION=true and turn on the "
                       "Message Content intent in the developer portal", message.guild.id)

    async def _answer(self, message: discord.Message, announcement: Announcement, *,
                      edited: bool) -> None:
        """Classify the track unless it was answered lately; react, reply, record."""
        assert message.guild is not None
        guild_id = message.guild.id
        answered = self._recent(guild_id)
        playing = announcement.kind == NOW_PLAYING
        earlier = next((answered[k] for k in announcement.keys if k in answered), None)
        if earlier is not None:
            if playing and not earlier.playing:
                earlier.playing = True
                await self._record(guild_id, earlier)
            return
        entry = _Answered(at=time.monotonic(), playing=playing)
        for key in announcement.keys:
            answered[key] = entry
        if self._waiting[guild_id] >= PER_GUILD + MAX_WAITING:
            logger.info("companion mode in guild %s: too many tracks at once, %r skipped",
                        guild_id, announcement.name)
            return
        self._waiting[guild_id] += 1
        try:
            async with self._limits.setdefault(guild_id, asyncio.Semaphore(PER_GUILD)):
                mood = await self._classify(announcement)
        finally:
            self._waiting[guild_id] -= 1
        if mood is None:
            return
        entry.track_id = mood.track_id
        await self._record(guild_id, entry)
        me = self.bot.user
        await _reply(message, mood, retract_from=me if edited and me is not None else None)

    def _recent(self, guild_id: int) -> dict[str, _Answered]:
        """The guild's recently answered tracks, the expired ones dropped."""
        answered = self._answered.setdefault(guild_id, {})
        cutoff = time.monotonic() - DEDUPE_S
        for key in [k for k, entry in answered.items() if entry.at < cutoff]:
            del answered[key]
        return answered

    async def _classify(self, announcement: Announcement) -> TrackMood | None:
        """The track's mood: stored, else by its link, else by its name; None when no
        query found it (logged)."""
        queries = list(announcement.queries)
        stored = await self._stored(announcement)
        if stored is not None:
            queries.insert(0, track_ref(stored))
        reasons: list[str] = []
        for query in queries:
            try:
                return await self.bot.tracks.resolve(query)
            except ServiceError as exc:
                reasons.append(str(exc))
        logger.info("companion mode: no mood for %r (%s)", announcement.name,
                    "; ".join(reasons))
        return None

    async def _stored(self, announcement: Announcement) -> int | None:
        """The stored track with the announcement's artist and title, if there is one."""
        if not announcement.artist:
            return None  # a title alone may name another song of the library
        title, artist = normal(announcement.title), normal(announcement.artist)
        for stored in await self.bot.tracks.library():
            if normal(stored.title) == title and normal(stored.artist) == artist:
                return stored.track_id
        return None

    async def _record(self, guild_id: int, entry: _Answered) -> None:
        """Record a track that started playing in the guild's history (once)."""
        if not entry.playing or entry.recorded or entry.track_id is None:
            return
        entry.recorded = True
        try:
            await self.bot.service.recommendations.played(f"discord:{guild_id}",
                                                          [entry.track_id])
        except ServiceError as exc:
            logger.warning("companion mode: could not record track %s as played in guild %s: "
                           "%s", entry.track_id, guild_id, exc)


def _in_channel(channel: object, channel_id: int) -> bool:
    """Whether a message's channel is the companion channel or one of its threads."""
    if isinstance(channel, discord.Thread):
        return channel.id == channel_id or channel.parent_id == channel_id
    return getattr(channel, "id", None) == channel_id


def answer_line(mood: TrackMood) -> str:
    """The line posted under an announcement: ``😄 **happy** (72% sure) · Artist - Title ·
    valence 0.62, arousal 0.71``."""
    result = mood.result
    quadrant = result.quadrant.value
    name = escape_markdown(track_name(mood.title, mood.artist))
    return shorten(f"{EMOJI[quadrant]} **{MOODS[quadrant]}** ({result.confidence:.0%} sure) · "
                   f"{name} · valence {result.valence:.2f}, arousal {result.arousal:.2f} · "
                   "`/mood track` for the chart", 1900)


def thread_name(mood: TrackMood) -> str:
    """The answer thread's name: ``😄 happy · Artist - Title`` (at most 100 characters)."""
    quadrant = mood.result.quadrant.value
    return shorten(f"{EMOJI[quadrant]} {MOODS[quadrant]} · "
                   f"{track_name(mood.title, mood.artist)}", _THREAD_NAME_MAX)


def _permissions(message: discord.Message) -> discord.Permissions | None:
    """The bot's permissions where the message is; None when unknown (then each step is
    tried, and a refusal handled)."""
    guild = message.guild
    me = guild.me if guild is not None else None
    if me is None or isinstance(message.channel, discord.DMChannel | discord.GroupChannel
                                | discord.PartialMessageable):
        return None
    return message.channel.permissions_for(me)


async def _reply(message: discord.Message, mood: TrackMood, *,
                 retract_from: discord.abc.Snowflake | None = None) -> None:
    """React with the mood's emoji, then answer in a thread, else in a reply.

    ``retract_from``: the bot itself, on an edited message, whose earlier mood reaction goes.
    """
    allowed = _permissions(message)
    emoji = EMOJI[mood.result.quadrant.value]
    if allowed is None or (allowed.add_reactions and allowed.read_message_history):
        await _react(message, emoji, retract_from)
    text = answer_line(mood)
    if await _in_thread(message, text, thread_name(mood), allowed):
        return
    if allowed is not None and not allowed.send_messages:
        return
    try:
        await message.reply(text, mention_author=False)
    except discord.HTTPException as exc:
        logger.info("companion mode: cannot answer message %s (%s); the reaction says it",
                    message.id, exc.text or exc.status)


async def _react(message: discord.Message, emoji: str,
                 retract_from: discord.abc.Snowflake | None) -> None:
    """Add the mood's reaction, after taking back an earlier mood's own reaction."""
    try:
        if retract_from is not None:
            for old in [r.emoji for r in message.reactions
                        if r.me and r.emoji in EMOJI.values() and r.emoji != emoji]:
                await message.remove_reaction(old, retract_from)
        await message.add_reaction(emoji)
    except discord.HTTPException as exc:
        logger.info("companion mode: cannot react to message %s (%s)", message.id,
                    exc.text or exc.status)


async def _in_thread(message: discord.Message, text: str, name: str,
                     allowed: discord.Permissions | None) -> bool:
    """Post ``text`` in the message's thread (created when it has none); False when the
    channel has no threads or the bot may not use them."""
    if not isinstance(message.channel, discord.TextChannel):
        return False  # already a thread, or a voice channel's chat: threads cannot start here
    if allowed is not None and not (allowed.create_public_threads
                                    and allowed.send_messages_in_threads):
        return False
    try:
        thread = message.thread or await message.create_thread(
            name=name, auto_archive_duration=THREAD_ARCHIVE_MIN)
        await thread.send(text)
    except discord.HTTPException as exc:
        logger.info("companion mode: no thread on message %s (%s); replying instead",
                    message.id, exc.text or exc.status)
        return False
    return True


async def setup(bot: MoodBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Companion(bot))
