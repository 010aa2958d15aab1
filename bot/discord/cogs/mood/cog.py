"""The ``/mood`` commands: ``track``, ``now``, ``recommend``, ``journey``, ``stats``.

Each command parses its options, calls the service, and renders (:mod:`bot.discord.render`).
Slow work runs off the event loop: the service classifies in worker processes or threads,
and charts are drawn in a worker thread. Commands that may take more than a moment defer
first (Discord shows "thinking...") and answer with a follow-up.
"""

from __future__ import annotations

import asyncio
import gc
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import errors
from bot.discord.bot import MoodBot, history_scope
from bot.discord.cogs.mood.views import PicksView, TrackView
from bot.discord.render import (
    CHART,
    mix_embed,
    mood_label,
    picks_embed,
    track_embed,
    track_name,
)
from bot.service import ServiceError
from bot.service.tracks import MOODS, quadrant

if TYPE_CHECKING:
    from bot.service import TrackMood
    from bot.service.recommendations import Picks

Interaction = discord.Interaction[MoodBot]
#: The moods as option choices (the value is the mood word the service reads).
MOOD_CHOICES: Final = [app_commands.Choice(name=word, value=word) for word in MOODS.values()]
#: ``/mood stats`` periods and their length (None: ever).
PERIODS: Final[dict[str, timedelta | None]] = {
    "day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30),
    "all": None}
Period = Literal["day", "week", "month", "all"]


class Mood(commands.GroupCog, group_name="mood",
           group_description="How music feels: moods, suggestions, journeys"):
    """The ``/mood`` group.

    Parameters
    ----------
    bot : MoodBot
        The bot; its service is read when a command runs.
    """

    def __init__(self, bot: MoodBot) -> None:
        self.bot = bot
        super().__init__()

    async def cog_app_command_error(self, interaction: discord.Interaction[Any],
                                    error: app_commands.AppCommandError) -> None:
        """Expected failures (a service's refusal, a cooldown) answered here; the rest
        falls through to the tree's handler, which logs it."""
        if errors.user_message(error) is not None:
            await errors.report(interaction, error, where=_where(interaction))

    # --- commands -------------------------------------------------------------------------

    @app_commands.command(name="track")
    @app_commands.describe(query='A song: "Artist - Title", a link, or pick one of the '
                                 "library as you type")
    @app_commands.checks.cooldown(2, 20.0)
    async def track(self, interaction: Interaction,
                    query: app_commands.Range[str, 1, 200]) -> None:
        """How a song feels: its mood, and its place on the valence/arousal plane."""
        await interaction.response.defer(thinking=True)
        mood = await self.bot.tracks.resolve(query)
        await self._send_track(interaction, mood)

    @track.autocomplete("query")
    async def track_autocomplete(self, interaction: Interaction,
                                 current: str) -> list[app_commands.Choice[str]]:
        """Stored tracks whose title or artist starts with what was typed."""
        return await self.bot.library_choices(current)

    @app_commands.command(name="now")
    @app_commands.checks.cooldown(3, 15.0)
    async def now(self, interaction: Interaction) -> None:
        """The mood of the track playing (or next) in this server."""
        queue = self.bot.track_queue()
        if queue is None or interaction.guild_id is None:
            await interaction.response.send_message(
                "Nothing is playing: the queue is not available yet.", ephemeral=True)
            return
        track_id = await queue.now_playing(interaction.guild_id)
        if track_id is None:
            await interaction.response.send_message("Nothing is playing.", ephemeral=True)
            return
        await interaction.response.defer(thinking=True)
        await self._send_track(interaction, await self.bot.tracks.mood(track_id))

    @app_commands.command(name="recommend")
    @app_commands.describe(mood="Tracks of this mood", like="Or: tracks like this one (a song, "
                           "a link, or one of the library)", n="How many (1-25)")
    @app_commands.choices(mood=MOOD_CHOICES)
    @app_commands.checks.cooldown(3, 30.0)
    async def recommend(self, interaction: Interaction,
                        mood: app_commands.Choice[str] | None = None,
                        like: app_commands.Range[str, 1, 200] | None = None,
                        n: app_commands.Range[int, 1, 25] = 10) -> None:
        """Tracks of the library for a mood, or like a song."""
        if (mood is None) == (like is None):
            raise ServiceError("Give either a mood or a song to be like (not both).")
        await interaction.response.defer(thinking=True)
        scope = history_scope(interaction)
        if mood is not None:
            picks = await self.bot.service.recommendations.recommend(mood.value, n, scope=scope)
            title = f"{mood_label(quadrant(mood.value))} picks"
        else:
            assert like is not None
            picks = await self.bot.tracks.similar(like, n, scope=scope)
            title = f"Like {await self.bot.tracks.name_of(like)}"
        await self._send_picks(interaction, picks, title=title)

    @recommend.autocomplete("like")
    async def recommend_autocomplete(self, interaction: Interaction,
                                     current: str) -> list[app_commands.Choice[str]]:
        """Stored tracks, as for ``/mood track``."""
        return await self.bot.library_choices(current)

    @app_commands.command(name="journey")
    @app_commands.rename(start="from", end="to")
    @app_commands.describe(start="The mood to start from", end="The mood to arrive at",
                           steps="Tracks on the way (2-25)")
    @app_commands.choices(start=MOOD_CHOICES, end=MOOD_CHOICES)
    @app_commands.checks.cooldown(2, 30.0)
    async def journey(self, interaction: Interaction, start: app_commands.Choice[str],
                      end: app_commands.Choice[str],
                      steps: app_commands.Range[int, 2, 25] = 5) -> None:
        """A playlist that walks from one mood to another, one step per track."""
        await interaction.response.defer(thinking=True)
        recommendations = self.bot.service.recommendations
        picks = await recommendations.journey(start.value, end.value, steps,
                                              scope=history_scope(interaction))
        title = (f"Journey: {mood_label(quadrant(start.value))} → "
                 f"{mood_label(quadrant(end.value))}")
        library = await self.bot.tracks.library()
        chart = await _render(_plot_journey, library, picks, title)
        await self._send_picks(interaction, picks, title=title, chart=chart)

    @app_commands.command(name="stats")
    @app_commands.describe(period="Tracks played or suggested here in the last day, week, "
                                  "month, or ever")
    @app_commands.checks.cooldown(2, 30.0)
    async def stats(self, interaction: Interaction, period: Period = "week") -> None:
        """The mood mix of this server's music (or of the whole library)."""
        await interaction.response.defer(thinking=True)
        length = PERIODS[period]
        since = datetime.now(UTC) - length if length is not None else None
        mix = await self.bot.tracks.mood_mix(scope=history_scope(interaction), since=since)
        where = "this server" if interaction.guild_id is not None else "this conversation"
        title = f"Moods heard in {where}" + (f", last {period}" if length else "")
        if mix.total == 0:
            mix = await self.bot.tracks.mood_mix()
            title = (f"Nothing played or suggested in {where}"
                     + (f" in the last {period}" if length else "") + ": the whole library")
        chart = await _render(_plot_mix, mix.counts, title)
        await interaction.followup.send(embed=mix_embed(mix, title=title),
                                        file=discord.File(chart, filename=CHART))

    # --- helpers ---------------------------------------------------------------------------

    async def _send_track(self, interaction: Interaction, mood: TrackMood) -> None:
        library = await self.bot.tracks.library()
        chart = await _render(_plot_track, mood, library)
        view = TrackView(self.bot, mood)
        view.message = await interaction.followup.send(
            embed=track_embed(mood), file=discord.File(chart, filename=CHART), view=view,
            wait=True)

    async def _send_picks(self, interaction: Interaction, picks: Picks, *, title: str,
                          chart: io.BytesIO | None = None) -> None:
        view = PicksView(self.bot, picks)
        embed = picks_embed(picks, title=title, note=picks.note, chart=chart is not None)
        if chart is not None:
            view.message = await interaction.followup.send(
                embed=embed, view=view, file=discord.File(chart, filename=CHART), wait=True)
        else:
            view.message = await interaction.followup.send(embed=embed, view=view, wait=True)


def _where(interaction: discord.Interaction[Any]) -> str:
    command = interaction.command
    return f"/{command.qualified_name}" if command is not None else "/mood"


#: Charts are drawn one at a time, in a thread of their own (see :func:`_drawn`).
_CHARTS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mood-charts")


async def _render(draw: Callable[..., io.BytesIO], *args: Any) -> io.BytesIO:
    """Draw a chart in the chart thread (matplotlib would block the event loop)."""
    return await asyncio.get_running_loop().run_in_executor(_CHARTS, _drawn, draw, *args)


def _drawn(draw: Callable[..., io.BytesIO], *args: Any) -> io.BytesIO:
    """Draw, then free the figure's objects while they are few.

    A figure leaves about 6,400 objects in reference cycles, which only the cyclic collector
    frees; left to pile up, a full collection freed 50,000-80,000 of them at once and held the
    GIL, and so the event loop, for 66-150 ms (``bench/load.py discord``). When the start-up
    heap is frozen (``MoodBot(freeze_heap=True)``, as ``mer bot run`` builds it), a
    collection here walks only what was made since: a few milliseconds. With one chart at a
    time, no other figure is half-drawn then.
    """
    chart = draw(*args)
    if gc.get_freeze_count():
        gc.collect()
    return chart


def _plot_track(mood: TrackMood, library: list[Any]) -> io.BytesIO:
    from bot.service.charts import plot_track

    out = io.BytesIO()
    plot_track(mood.result, out, title=track_name(mood.title, mood.artist), library=library)
    out.seek(0)
    return out


def _plot_journey(library: list[Any], picks: Picks, title: str) -> io.BytesIO:
    from bot.service.charts import plot_library

    out = io.BytesIO()
    plot_library(library, out, journey=picks, title=title)
    out.seek(0)
    return out


def _plot_mix(counts: dict[str, int], title: str) -> io.BytesIO:
    from bot.service.charts import plot_mix

    out = io.BytesIO()
    plot_mix(counts, out, title=title)
    out.seek(0)
    return out
