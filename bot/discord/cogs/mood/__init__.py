"""The ``/mood`` group: how a track feels, suggestions, journeys and the mood mix."""

from __future__ import annotations

from bot.discord.bot import MoodBot
from bot.discord.cogs.mood.cog import Mood


async def setup(bot: MoodBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Mood(bot))
