"""Discord interactions without a gateway or HTTP, in the manner of discord.py's own tests.

:class:`FakeInteraction` is the console's :class:`~bot.discord.console.interaction.
ConsoleInteraction` (a real :class:`discord.Interaction` built from the payload Discord would
send, whose ``response`` and ``followup`` record what the bot sends) with the tests' ids: a
fixed application and guild, and ids from a counter, so that every interaction of a test is
made at the same instant (cooldowns do not expire during a test).
:func:`invoke` hands an interaction to a command tree the way discord.py's gateway handler
does, so option parsing, checks (cooldowns), autocomplete and the error handlers all run.
"""

from __future__ import annotations

import itertools
from typing import Any

import discord

from bot.discord.console import interaction as console
from bot.discord.console.interaction import Sent, command_data, component_data, invoke

APPLICATION_ID = 4242
GUILD_ID = 777
CHANNEL_ID = 555
_ids = itertools.count(10_000)
#: The recording outlets, under the names the tests knew them by.
RecordingResponse = console.ConsoleResponse
RecordingFollowup = console.ConsoleFollowup
FakeMessage = console.ConsoleMessage

__all__ = ["APPLICATION_ID", "GUILD_ID", "FakeInteraction", "FakeMessage", "RecordingFollowup",
           "RecordingResponse", "Sent", "click", "invoke", "log_in"]


def log_in(client: discord.Client) -> None:
    """Give the client the user it would have after logging in (guild payloads need it)."""
    console.log_in(client, APPLICATION_ID)


def _option(name: str, value: Any, *, focused: bool = False) -> dict[str, Any]:
    kind = (discord.AppCommandOptionType.boolean if isinstance(value, bool)
            else discord.AppCommandOptionType.integer if isinstance(value, int)
            else discord.AppCommandOptionType.number if isinstance(value, float)
            else discord.AppCommandOptionType.string)
    option: dict[str, Any] = {"type": kind.value, "name": name, "value": value}
    if focused:
        option["focused"] = True
    return option


class FakeInteraction(console.ConsoleInteraction):
    """A real interaction from a Discord payload whose replies are recorded in :attr:`sent`.

    Build one with :meth:`slash`, :meth:`typing` (autocomplete) or :meth:`press` (a button).
    (Not ``command``: that is the interaction's own property, which the tree reads.)
    """

    def __init__(self, client: discord.Client, kind: discord.InteractionType,
                 data: dict[str, Any], *, user_id: int = 1, guild_id: int | None = GUILD_ID,
                 permissions: discord.Permissions | None = None) -> None:
        super().__init__(client, kind, data, user_id=user_id, guild_id=guild_id,
                         channel_id=CHANNEL_ID, application_id=APPLICATION_ID,
                         permissions=permissions, interaction_id=next(_ids))

    @classmethod
    def slash(cls, client: discord.Client, path: str, /, **options: Any) -> FakeInteraction:
        """A slash command: ``slash(bot, "mood track", query="...")``.

        Keyword arguments ``user_id``, ``guild_id`` and ``permissions`` set who asks, where.
        """
        who = {k: options.pop(k) for k in ("user_id", "guild_id", "permissions")
               if k in options}
        data = command_data(path, [_option(k, v) for k, v in options.items()])
        return cls(client, discord.InteractionType.application_command, data, **who)

    @classmethod
    def typing(cls, client: discord.Client, path: str, /, focused: str, value: str,
               **options: Any) -> FakeInteraction:
        """An autocomplete request while the user types ``value`` into option ``focused``."""
        who = {k: options.pop(k) for k in ("user_id", "guild_id") if k in options}
        listed = [_option(k, v) for k, v in options.items()]
        listed.append(_option(focused, value, focused=True))
        return cls(client, discord.InteractionType.autocomplete, command_data(path, listed),
                   **who)

    @classmethod
    def press(cls, client: discord.Client, item: discord.ui.Item[Any] | None = None, *,
              values: list[str] | None = None, **who: Any) -> FakeInteraction:
        """A button press, or a select's choice of ``values`` (see :func:`click`)."""
        return cls(client, discord.InteractionType.component, component_data(item, values),
                   **who)


async def click(view: discord.ui.View, item: discord.ui.Item[Any],
                interaction: FakeInteraction | None = None, **who: Any) -> FakeInteraction:
    """Press a view's button (or choose in its select) as discord.py's view store does:
    state from the payload, checks, the callback, and the view's ``on_error`` on failure.

    ``who`` builds the interaction (``user_id``, ``guild_id``, ``values``) when none is given.
    """
    client = view.bot if hasattr(view, "bot") else None
    if interaction is None:
        assert client is not None, "give the interaction"
        interaction = FakeInteraction.press(client, item, **who)
    await console.press(view, item, interaction)
    return interaction
