"""The ``/queue`` commands, the listener that follows each guild's queue, and voice.

- ``/queue add <query>``, ``list``, ``skip``, ``remove <position>``, ``clear``: the guild's
  queue (:class:`~bot.discord.queue.GuildQueues`, in the database: it survives restarts);
  ``join`` and ``leave``: play it in the caller's voice channel (:mod:`bot.discord.voice`).
- Per guild, the service's :class:`~bot.service.listening.Listener` follows the queue as
  it follows MPD: it classifies queued tracks before their turn, records plays in the guild's
  history, and, as the guild's settings say (``/mood-admin settings``), posts a now-playing
  embed with three tracks that fit and Add buttons in the chosen channel when a track starts
  (auto-suggest), and appends a mood-matched track when the queue runs low (auto-DJ).
- The cog is the bot's :class:`~bot.discord.bot.TrackQueue`: "Add to queue" and "Queue all"
  under the mood commands' answers, and ``/mood now``, go through it.

Who may change the queue: anyone adds; a track is skipped or removed by whoever queued it
(anyone for the auto-DJ's tracks) or by a member who can manage the server, who alone may
clear tracks of others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import errors
from bot.discord.bot import QUEUE_COG, MoodBot
from bot.discord.cogs.mood.views import MoodView
from bot.discord.queue import AUTO_DJ, GuildPlayer, GuildQueues, QueueItem
from bot.discord.render import EMOJI, now_playing_embed, queue_embed, shorten
from bot.discord.voice import AudioFactory, VoicePlayback, ffmpeg_audio
from bot.service import ServiceError
from bot.service.listening import ListenConfig, Listener, ListenEvent
from bot.service.player import SUBSYSTEMS
from bot.service.tracks import parse_ref

if TYPE_CHECKING:
    from bot.discord.guilds import GuildConfig
    from bot.service import TrackMood
    from bot.service.recommendations import Pick, Recommendations

logger = logging.getLogger(__name__)

Interaction = discord.Interaction[MoodBot]
#: Tracks listed by ``/queue list``.
LIST_SHOWN: Final = 15
#: Tracks the listener classifies ahead, and the fewest the auto-DJ keeps waiting.
AHEAD: Final = 3
KEEP: Final = 2


class _Listening:
    """The service as the listener needs it, reading stored tracks by reference."""

    def __init__(self, bot: MoodBot) -> None:
        self.bot = bot

    async def classify(self, query: str) -> TrackMood:
        track_id = parse_ref(query)
        if track_id is None:
            return await self.bot.service.classify(query)
        return await self.bot.tracks.live_mood(track_id)

    @property
    def recommendations(self) -> Recommendations:
        return self.bot.service.recommendations


def listen_config(config: GuildConfig) -> ListenConfig:
    """How the listener behaves for a guild's settings: it always classifies ahead;
    auto-DJ keeps :data:`KEEP` tracks waiting; auto-suggest suggests three."""
    return ListenConfig(mode="autodj" if config.auto_dj else "annotate", ahead=AHEAD,
                        keep=KEEP, suggest=config.auto_suggest)


class Queue(commands.GroupCog, name=QUEUE_COG, group_name="queue",
            group_description="This server's queue: add, list, skip, remove, clear, voice"):
    """The ``/queue`` group and the guilds' listeners.

    Parameters
    ----------
    bot : MoodBot
        The bot (built with a service when commands run).
    audio : callable, optional
        Builds voice audio from a file (tests give a silent source).
    """

    def __init__(self, bot: MoodBot, *, audio: AudioFactory = ffmpeg_audio) -> None:
        self.bot = bot
        self.audio = audio
        self._queues: GuildQueues | None = None
        self._followers: dict[int, asyncio.Task[None]] = {}
        self._voices: dict[int, tuple[discord.VoiceClient, asyncio.Task[None]]] = {}
        self._posts: set[asyncio.Task[None]] = set()
        super().__init__()

    @property
    def queues(self) -> GuildQueues:
        """Every guild's queue."""
        if self._queues is None:
            self._queues = GuildQueues(self.bot.service, self.bot.tracks)
        return self._queues

    async def cog_load(self) -> None:
        """Pick up the guilds whose queue was not empty when the bot stopped."""
        if not self.bot.has_service:
            return  # listing or syncing commands only
        for guild_id in await self.queues.active_guilds():
            self.follow(guild_id)

    async def cog_unload(self) -> None:
        """Stop the listeners and leave the voice channels."""
        tasks = [task for _, task in self._voices.values()]
        tasks += [*self._followers.values(), *self._posts]
        for task in tasks:
            task.cancel()
        # Wait for them: the service closes after the cog, and a task cancelled in the
        # middle of a database call must be done with it first.
        await asyncio.gather(*tasks, return_exceptions=True)
        for voice, _ in self._voices.values():
            await voice.disconnect(force=True)
        self._voices.clear()
        self._followers.clear()

    async def cog_app_command_error(self, interaction: discord.Interaction[Any],
                                    error: app_commands.AppCommandError) -> None:
        """Expected failures answered here; the rest falls through to the tree's handler."""
        if errors.user_message(error) is not None:
            command = interaction.command
            await errors.report(interaction, error, where=f"/{command.qualified_name}"
                                if command else "/queue")

    # --- TrackQueue ----------------------------------------------------------------------

    async def enqueue(self, guild_id: int, user_id: int, track_ids: Sequence[int]) -> str:
        """Queue stored tracks for a user; the line to show them (see ``TrackQueue``)."""
        items = await self.queues.add(guild_id, str(user_id), track_ids)
        self.follow(guild_id)
        return _queued_line(items)

    async def now_playing(self, guild_id: int) -> int | None:
        """The stored track playing in a guild (None when its queue is empty)."""
        current = await self.queues.current(guild_id)
        return current.track_id if current is not None else None

    # --- commands ------------------------------------------------------------------------

    @app_commands.command(name="add")
    @app_commands.describe(query='A song: "Artist - Title", a link, or pick one of the '
                                 "library as you type")
    @app_commands.guild_only()
    @app_commands.checks.cooldown(5, 20.0)
    async def add(self, interaction: Interaction,
                  query: app_commands.Range[str, 1, 200]) -> None:
        """Queue a song in this server (classified first when it is new)."""
        guild_id = _guild(interaction)
        track_id = parse_ref(query)
        if track_id is None:
            await interaction.response.defer(thinking=True)
            track_id = (await self.bot.tracks.resolve(query)).track_id
        text = await self.enqueue(guild_id, interaction.user.id, [track_id])
        if interaction.response.is_done():
            await interaction.followup.send(text)
        else:
            await interaction.response.send_message(text)

    @add.autocomplete("query")
    async def add_autocomplete(self, interaction: Interaction,
                               current: str) -> list[app_commands.Choice[str]]:
        """Stored tracks whose title or artist starts with what was typed."""
        return await self.bot.library_choices(current)

    @app_commands.command(name="list")
    @app_commands.guild_only()
    @app_commands.checks.cooldown(3, 10.0)
    async def list_(self, interaction: Interaction) -> None:
        """What plays now and what comes next, with moods and who asked."""
        guild_id = _guild(interaction)
        items = await self.queues.items(guild_id, limit=LIST_SHOWN + 1)
        if not items:
            await interaction.response.send_message(
                "The queue is empty: `/queue add` a song.", ephemeral=True)
            return
        waiting = await self.queues.length(guild_id)
        moods = {m.track_id: m.quadrant for m in await self.bot.tracks.library()}
        await interaction.response.send_message(
            embed=queue_embed(items, moods, waiting=waiting, shown=LIST_SHOWN))

    @app_commands.command(name="skip")
    @app_commands.guild_only()
    @app_commands.checks.cooldown(3, 10.0)
    async def skip(self, interaction: Interaction) -> None:
        """Skip the current track (yours, the auto-DJ's, or any with Manage Server)."""
        guild_id = _guild(interaction)
        current = await self.queues.current(guild_id)
        if current is None:
            raise ServiceError("Nothing is playing.")
        _check_owner(interaction, current, "skip")
        following = await self.queues.advance(guild_id, skipped=True)
        text = f"Skipped **{discord.utils.escape_markdown(current.name)}**."
        text += (f" Now playing **{discord.utils.escape_markdown(following.name)}**."
                 if following else " The queue is empty.")
        await interaction.response.send_message(text)

    @app_commands.command(name="remove")
    @app_commands.describe(position="Its place in /queue list (1 is next)")
    @app_commands.guild_only()
    @app_commands.checks.cooldown(5, 10.0)
    async def remove(self, interaction: Interaction,
                     position: app_commands.Range[int, 1, 10_000]) -> None:
        """Take a waiting track out of the queue (yours, or any with Manage Server)."""
        guild_id = _guild(interaction)
        waiting = await self.queues.waiting(guild_id)
        if 1 <= position <= len(waiting):
            _check_owner(interaction, waiting[position - 1], "remove")
        item = await self.queues.remove(guild_id, position)
        await interaction.response.send_message(
            f"Removed **{discord.utils.escape_markdown(item.name)}** from the queue.")

    @app_commands.command(name="clear")
    @app_commands.guild_only()
    @app_commands.checks.cooldown(2, 10.0)
    async def clear(self, interaction: Interaction) -> None:
        """Remove every waiting track (the current one plays on)."""
        guild_id = _guild(interaction)
        waiting = await self.queues.waiting(guild_id)
        others = {i.requested_by for i in waiting} - {str(interaction.user.id), AUTO_DJ}
        if others and not _manages(interaction):
            raise ServiceError("Tracks of others are waiting: clearing them needs the Manage "
                               "Server permission.")
        count = await self.queues.clear(guild_id)
        await interaction.response.send_message(
            f"Cleared {count} waiting track{'s' * (count != 1)}." if count
            else "Nothing was waiting.")

    @app_commands.command(name="join")
    @app_commands.guild_only()
    @app_commands.checks.cooldown(2, 10.0)
    async def join(self, interaction: Interaction) -> None:
        """Play the queue in your voice channel."""
        guild_id = _guild(interaction)
        member = interaction.user
        channel = member.voice.channel if isinstance(member, discord.Member) and \
            member.voice else None
        if channel is None:
            raise ServiceError("Join a voice channel first, then ask again.")
        if guild_id in self._voices:
            raise ServiceError("I am playing in a voice channel of this server already: "
                               "`/queue leave` first.")
        await interaction.response.defer(thinking=True)
        try:
            voice: discord.VoiceClient = await channel.connect(self_deaf=True)
        except (discord.ClientException, TimeoutError, discord.HTTPException) as exc:
            raise ServiceError(f"I could not join {channel.mention}: {exc}") from exc
        self.start_voice(guild_id, voice)
        self.follow(guild_id)
        await interaction.followup.send(f"Playing the queue in {channel.mention}.")

    @app_commands.command(name="leave")
    @app_commands.guild_only()
    async def leave(self, interaction: Interaction) -> None:
        """Stop playing and leave the voice channel (the queue stays)."""
        guild_id = _guild(interaction)
        if not await self.stop_voice(guild_id):
            raise ServiceError("I am not in a voice channel of this server.")
        await interaction.response.send_message("Left the voice channel; the queue stays.")

    # --- voice ---------------------------------------------------------------------------

    def start_voice(self, guild_id: int, voice: discord.VoiceClient) -> VoicePlayback:
        """Play a guild's queue through a connected voice client."""
        playback = VoicePlayback(self.queues, self.bot.tracks, guild_id, voice,
                                 audio=self.audio)
        task = asyncio.create_task(playback.run(), name=f"voice {guild_id}")
        task.add_done_callback(_log_crash)
        self._voices[guild_id] = (voice, task)
        return playback

    async def stop_voice(self, guild_id: int) -> bool:
        """Stop playing in a guild and disconnect; False when it was not playing."""
        entry = self._voices.pop(guild_id, None)
        if entry is None:
            return False
        voice, task = entry
        task.cancel()
        await voice.disconnect(force=False)
        return True

    # --- listening -----------------------------------------------------------------------

    def follow(self, guild_id: int) -> None:
        """Start the guild's listener unless it runs already."""
        running = self._followers.get(guild_id)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self._follow(guild_id), name=f"listener {guild_id}")
        task.add_done_callback(_log_crash)
        self._followers[guild_id] = task

    async def _follow(self, guild_id: int) -> None:
        player = GuildPlayer(self.queues, guild_id)
        listener = Listener(player, _Listening(self.bot),
                            report=lambda event: self._report(guild_id, event))
        changes = self.queues.changes(guild_id)
        try:
            await self._look(listener, guild_id)
            async for _ in changes:
                await self._look(listener, guild_id)
        finally:
            changes.close()

    async def _look(self, listener: Listener, guild_id: int) -> None:
        listener.config = listen_config(await self.bot.guild_settings.get(guild_id))
        await listener.step(SUBSYSTEMS)

    def _report(self, guild_id: int, event: ListenEvent) -> None:
        """A listener's event: post it where the guild asked (never blocks the listener)."""
        if event.kind == "problem":
            logger.warning("guild %s: %s", guild_id, event.message)
        if event.kind not in ("suggested", "added"):
            return
        task = asyncio.create_task(self._post(guild_id, event))
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    async def _post(self, guild_id: int, event: ListenEvent) -> None:
        config = await self.bot.guild_settings.get(guild_id)
        if config.suggest_channel_id is None:
            return
        if event.kind == "suggested" and config.auto_suggest and event.mood is not None:
            view = SuggestionsView(self.bot, event.picks)
            view.message = await self.send(config.suggest_channel_id,
                                           embed=now_playing_embed(event.mood, event.picks),
                                           view=view)
        elif event.kind == "added" and event.picks:
            track = event.picks[0].track
            await self.send(config.suggest_channel_id,
                            content=f"🎧 Auto-DJ queued {EMOJI[track.quadrant]} **"
                                    f"{discord.utils.escape_markdown(track.artist)} - "
                                    f"{discord.utils.escape_markdown(track.title)}**.")

    async def send(self, channel_id: int, **message: Any) -> discord.Message | None:
        """Post in a channel; None (logged) when it is gone or the bot may not post."""
        channel = self.bot.get_partial_messageable(channel_id)
        try:
            return await channel.send(**message)
        except discord.HTTPException as exc:
            logger.warning("cannot post in channel %s: %s", channel_id, exc)
            return None


class SuggestionsView(MoodView):
    """One Add button per suggested track, under a now-playing post."""

    def __init__(self, bot: MoodBot, picks: Sequence[Pick]) -> None:
        super().__init__(bot)
        for i, pick in enumerate(picks, start=1):
            button: discord.ui.Button[SuggestionsView] = discord.ui.Button(
                label=shorten(f"Add {i}: {pick.track.title}", 80), emoji="➕",
                style=discord.ButtonStyle.primary)
            button.callback = self._adder(pick.track.track_id)  # type: ignore[method-assign]
            self.add_item(button)

    def _adder(self, track_id: int) -> Any:
        async def add(interaction: discord.Interaction[Any]) -> None:
            queue = self.bot.track_queue()
            if queue is None or interaction.guild_id is None:
                await interaction.response.send_message("The queue is not available.",
                                                        ephemeral=True)
                return
            text = await queue.enqueue(interaction.guild_id, interaction.user.id, [track_id])
            await interaction.response.send_message(text)
        return add


def _guild(interaction: Interaction) -> int:
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage()
    return interaction.guild_id


def _manages(interaction: Interaction) -> bool:
    return interaction.permissions.manage_guild


def _check_owner(interaction: Interaction, item: QueueItem, action: str) -> None:
    if item.requested_by in (str(interaction.user.id), AUTO_DJ) or _manages(interaction):
        return
    raise ServiceError(f"Only who queued **{discord.utils.escape_markdown(item.name)}** (or a "
                       f"member with Manage Server) can {action} it.")


def _queued_line(items: Sequence[QueueItem]) -> str:
    first = items[0]
    name = discord.utils.escape_markdown(first.name)
    if len(items) > 1:
        return (f"Queued {len(items)} tracks, from position {first.position}"
                + (" (the first plays now)." if first.playing else "."))
    if first.playing:
        return f"Now playing **{name}**."
    return f"Queued **{name}** at position {first.position}."


def _log_crash(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped", task.get_name(), exc_info=task.exception())


async def setup(bot: MoodBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Queue(bot))

