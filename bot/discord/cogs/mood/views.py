"""The buttons under the mood commands' answers.

- :class:`TrackView` under a track's mood: Right, Wrong (then :class:`WrongMoodView`, a
  select of the four moods), Similar, Add to queue.
- :class:`PicksView` under a list of picks or a journey: Queue all, Export M3U8.

Right and Wrong store the user's answer through the service (one per user and track; a new
answer replaces the old). The queue buttons use the queue cog when one is loaded
(:class:`bot.discord.bot.TrackQueue`) and say so when not.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot.discord import errors
from bot.discord.bot import MoodBot, history_scope
from bot.discord.render import EMOJI, mood_label, picks_embed
from bot.service import ServiceError
from bot.service.tracks import MOODS, track_ref

if TYPE_CHECKING:
    from bot.service import TrackMood
    from bot.service.recommendations import Pick

logger = logging.getLogger(__name__)

#: How long the buttons answer, in seconds (then they are greyed out).
TIMEOUT_S = 15 * 60.0
#: Tracks the Similar button suggests.
SIMILAR_N = 5
#: What the queue buttons say until the queue cog exists.
NO_QUEUE = "The queue is not available yet."


class MoodView(discord.ui.View):
    """A view whose failures reach the user as one short line and the log as a traceback,
    and whose buttons are greyed out when it stops listening.

    Attributes
    ----------
    message : Message or None
        The message the view is attached to (set by whoever sends it).
    """

    def __init__(self, bot: MoodBot, *, timeout: float | None = TIMEOUT_S) -> None:
        super().__init__(timeout=timeout)
        self.bot = bot
        self.message: discord.Message | None = None

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception,
                       item: discord.ui.Item[Any], /) -> None:
        """Answer privately (see :func:`bot.discord.errors.report`)."""
        label = getattr(item, "label", None) or type(item).__name__
        await errors.report(interaction, error, where=f"{type(self).__name__} {label}")

    async def on_timeout(self) -> None:
        """Grey out the buttons of the message."""
        for item in self.children:
            if isinstance(item, discord.ui.Button | discord.ui.Select):
                item.disabled = True
        if self.message is not None:
            try:
                await self.message.edit(view=self)
            except discord.HTTPException as exc:  # deleted meanwhile, or Discord is away
                logger.debug("could not grey out the buttons: %s", exc)


def _context(interaction: discord.Interaction[Any]) -> str | None:
    return str(interaction.guild_id) if interaction.guild_id is not None else None


async def _store_answer(bot: MoodBot, interaction: discord.Interaction[Any], track_id: int,
                        quadrant: str) -> str:
    return await bot.tracks.feedback(track_id, quadrant, frontend="discord",
                                     user_id=str(interaction.user.id),
                                     context=_context(interaction))


async def _enqueue(bot: MoodBot, interaction: discord.Interaction[Any],
                   track_ids: Sequence[int]) -> None:
    queue = bot.track_queue()
    if queue is None:
        await interaction.response.send_message(NO_QUEUE, ephemeral=True)
        return
    if interaction.guild_id is None:
        await interaction.response.send_message("The queue works in servers only.",
                                                ephemeral=True)
        return
    text = await queue.enqueue(interaction.guild_id, interaction.user.id, track_ids)
    await interaction.response.send_message(text)


class TrackView(MoodView):
    """Right, Wrong, Similar, Add to queue, under one track's mood.

    Parameters
    ----------
    bot : MoodBot
        The bot (its service stores answers and finds similar tracks).
    mood : TrackMood
        The track shown.
    """

    def __init__(self, bot: MoodBot, mood: TrackMood, *,
                 timeout: float | None = TIMEOUT_S) -> None:
        super().__init__(bot, timeout=timeout)
        self.track_id = mood.track_id
        self.quadrant = mood.result.quadrant.value
        self.name = mood.title

    @discord.ui.button(label="Right", emoji="✅", style=discord.ButtonStyle.success)
    async def right(self, interaction: discord.Interaction[Any],
                    button: discord.ui.Button[TrackView]) -> None:
        """Store the user's agreement with the mood shown."""
        await _store_answer(self.bot, interaction, self.track_id, self.quadrant)
        await interaction.response.send_message(
            f"Thanks! Noted that it sounds {mood_label(self.quadrant)} to you.", ephemeral=True)

    @discord.ui.button(label="Wrong", emoji="❌", style=discord.ButtonStyle.danger)
    async def wrong(self, interaction: discord.Interaction[Any],
                    button: discord.ui.Button[TrackView]) -> None:
        """Ask the user which mood it is instead (a select, only they see it)."""
        view = WrongMoodView(self.bot, self.track_id)
        await interaction.response.send_message(
            f"How does **{discord.utils.escape_markdown(self.name)}** feel to you?",
            view=view, ephemeral=True)

    @discord.ui.button(label="Similar", emoji="🔎", style=discord.ButtonStyle.secondary)
    async def similar(self, interaction: discord.Interaction[Any],
                      button: discord.ui.Button[TrackView]) -> None:
        """Suggest tracks like this one."""
        await interaction.response.defer(thinking=True)
        picks = await self.bot.tracks.similar(track_ref(self.track_id), SIMILAR_N,
                                              scope=history_scope(interaction))
        view = PicksView(self.bot, picks)
        view.message = await interaction.followup.send(
            embed=picks_embed(picks, title=f"Like {self.name}", note=picks.note),
            view=view, wait=True)

    @discord.ui.button(label="Add to queue", emoji="➕", style=discord.ButtonStyle.primary)
    async def add_to_queue(self, interaction: discord.Interaction[Any],
                           button: discord.ui.Button[TrackView]) -> None:
        """Queue the track in this server."""
        await _enqueue(self.bot, interaction, [self.track_id])


class WrongMoodView(MoodView):
    """A select of the four moods; the choice is stored as the user's answer.

    Parameters
    ----------
    bot : MoodBot
        The bot.
    track_id : int
        The track the answer is about.
    """

    def __init__(self, bot: MoodBot, track_id: int, *, timeout: float | None = 300.0) -> None:
        super().__init__(bot, timeout=timeout)
        self.track_id = track_id

    @discord.ui.select(placeholder="Pick the mood you hear", min_values=1, max_values=1,
                       options=[discord.SelectOption(label=word, value=q, emoji=EMOJI[q])
                                for q, word in MOODS.items()])
    async def choice(self, interaction: discord.Interaction[Any],
                     select: discord.ui.Select[WrongMoodView]) -> None:
        """Store the chosen mood and close the select."""
        if not select.values:
            raise ServiceError("pick one of the four moods")
        quadrant = await _store_answer(self.bot, interaction, self.track_id, select.values[0])
        self.stop()
        await interaction.response.edit_message(
            content=f"Thanks! Noted: {mood_label(quadrant)}.", view=None)


class PicksView(MoodView):
    """Queue all, Export M3U8, under a list of picks.

    Parameters
    ----------
    bot : MoodBot
        The bot.
    picks : sequence of Pick
        The tracks listed, in order.
    """

    def __init__(self, bot: MoodBot, picks: Sequence[Pick], *,
                 timeout: float | None = TIMEOUT_S) -> None:
        super().__init__(bot, timeout=timeout)
        self.picks = list(picks)
        self.queue_all.disabled = bot.track_queue() is None or not self.picks
        self.export.disabled = not self.picks

    @discord.ui.button(label="Queue all", emoji="➕", style=discord.ButtonStyle.primary)
    async def queue_all(self, interaction: discord.Interaction[Any],
                        button: discord.ui.Button[PicksView]) -> None:
        """Queue every pick in this server, in order."""
        await _enqueue(self.bot, interaction, [p.track.track_id for p in self.picks])

    @discord.ui.button(label="Export M3U8", emoji="📄", style=discord.ButtonStyle.secondary)
    async def export(self, interaction: discord.Interaction[Any],
                     button: discord.ui.Button[PicksView]) -> None:
        """Send the picks as an M3U8 playlist, to the user only."""
        from bot.service.playlists import shared_m3u8

        text = shared_m3u8(self.picks)
        file = discord.File(io.BytesIO(text.encode("utf-8")), filename="moods.m3u8")
        await interaction.response.send_message(
            f"{len(self.picks)} tracks as a playlist:", file=file, ephemeral=True)
