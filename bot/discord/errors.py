"""What a user is told when a command or a button fails, and what the log gets.

Expected failures (a :class:`~bot.service.ServiceError`, a cooldown, a missing permission)
become one short ephemeral line. Anything else is a bug: the log gets the traceback and the
user a line saying so, never the traceback itself.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Final

import discord
from discord import app_commands

from bot.service import ServiceError

logger = logging.getLogger(__name__)

#: What a user reads when something unexpected failed (the log has the details).
GENERIC: Final = "Something went wrong on my side. It has been logged; please try again later."
#: ``interaction.extras`` key set once an error was answered (the tree's fallback skips it).
ANSWERED: Final = "mood_error_answered"
_MESSAGE_MAX = 1900


def user_message(error: BaseException) -> str | None:
    """The short line a user gets for an expected failure; None for a bug.

    Parameters
    ----------
    error : BaseException
        What a command, check or button raised (``CommandInvokeError`` is unwrapped).
    """
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, ServiceError):
        text = str(error)
        return text if len(text) <= _MESSAGE_MAX else text[:_MESSAGE_MAX - 1] + "…"
    if isinstance(error, app_commands.CommandOnCooldown):
        return (f"Easy there: you can use this command again in "
                f"{math.ceil(error.retry_after)} s.")
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works in servers only."
    if isinstance(error, app_commands.MissingPermissions):
        return f"You need the {_names(error.missing_permissions)} permission for this."
    if isinstance(error, app_commands.BotMissingPermissions):
        return f"I need the {_names(error.missing_permissions)} permission here."
    if isinstance(error, app_commands.CheckFailure):
        return "You cannot use this command here."
    if isinstance(error, app_commands.TransformerError):
        return f"That value does not fit: {shown(error.value)}."
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        return "This command changed since it was published; try again in a minute."
    return None


async def report(interaction: discord.Interaction[Any], error: BaseException, *,
                 where: str) -> None:
    """Answer a failure privately (once), logging the traceback of unexpected ones.

    Parameters
    ----------
    interaction : Interaction
        The command or component interaction that failed.
    error : BaseException
        What was raised.
    where : str
        What failed, for the log (``/mood track``, ``button Right``).
    """
    text = user_message(error)
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    if text is None:
        logger.error("%s failed (user %s, guild %s)", where, interaction.user.id,
                     interaction.guild_id, exc_info=original)
        text = GENERIC
    else:
        logger.info("%s refused: %s", where, text)
    interaction.extras[ANSWERED] = True
    await reply_privately(interaction, text)


async def reply_privately(interaction: discord.Interaction[Any], text: str) -> None:
    """Send ``text`` as an ephemeral reply, or as a follow-up once the reply was sent.

    After a public ``defer(thinking=True)`` Discord shows the first follow-up in place of
    the "thinking" message, publicly: the message is short and safe to show either way.
    """
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException as exc:  # the interaction expired, or Discord is away
        logger.warning("could not answer interaction %s: %s", interaction.id, exc)


def shown(value: object, limit: int = 60) -> str:
    """A user's value, quoted and cut for a message (never a whole paste)."""
    text = repr(str(value))
    return text if len(text) <= limit else text[:limit - 2] + "…'"


def _names(permissions: list[str]) -> str:
    return ", ".join(p.replace("_", " ").replace("guild", "server") for p in permissions)
