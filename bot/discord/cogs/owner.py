"""The owner's text command ``sync``: publish the slash commands when they changed.

Addressed by mentioning the bot (``@Mood sync``, ``@Mood sync here``), so the bot needs no
message-content intent. Only the bot's owners (the application's owner or team) may use it.
"""

from __future__ import annotations

import logging
from typing import Any, get_args

from discord.ext import commands

from bot.discord.bot import MoodBot, SyncTarget, sync_tree
from bot.discord.errors import GENERIC

logger = logging.getLogger(__name__)

_WHERE = {"global": "everywhere (Discord may take a moment to show them)",
          "here": "to this server", "clear": "from this server's own copies"}


class Owner(commands.Cog):
    """Commands for the bot's owner."""

    def __init__(self, bot: MoodBot) -> None:
        self.bot = bot

    @commands.command(name="sync")
    @commands.is_owner()
    async def sync(self, ctx: commands.Context[MoodBot], target: SyncTarget = "global") -> None:
        """Publish the slash commands: global (default), here (this server, at once), or
        clear (remove this server's copies)."""
        if target != "global" and ctx.guild is None:
            await ctx.reply(f"`sync {target}` works in a server.")
            return
        synced = await sync_tree(self.bot.tree, target, ctx.guild)
        await ctx.reply(f"Synced {len(synced)} commands {_WHERE[target]}.")

    async def cog_command_error(self, ctx: commands.Context[Any],
                                error: Exception) -> None:
        """Short answers for refusals; anything else goes to the bot's error log."""
        if isinstance(error, commands.NotOwner):
            await ctx.reply("Only the bot's owner can do that.")
        elif isinstance(error, commands.BadLiteralArgument):
            await ctx.reply(f"Use `sync` with one of: {', '.join(get_args(SyncTarget))}.")
        else:  # Discord refused (no applications.commands scope, say), or a bug
            logger.error("@bot %s failed", ctx.command, exc_info=error)
            await ctx.reply(GENERIC)


async def setup(bot: MoodBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Owner(bot))
