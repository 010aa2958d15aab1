"""Discord interactions without a gateway or HTTP, in the manner of discord.py's own tests.

:class:`FakeInteraction` is a real :class:`discord.Interaction` built from the payload Discord
would send (a slash command, an autocomplete, a button press); only its two outlets are
replaced: ``response`` and ``followup`` record what the bot sends instead of posting it.
:func:`invoke` hands an interaction to a command tree the way discord.py's gateway handler
does, so option parsing, checks (cooldowns), autocomplete and the error handlers all run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import discord
from discord import app_commands
from discord.utils import MISSING

APPLICATION_ID = 4242
GUILD_ID = 777
_ids = itertools.count(10_000)


@dataclass
class Sent:
    """One thing the bot sent: a deferral, a reply, a follow-up, an edit or autocomplete."""

    kind: str
    content: str | None = None
    embeds: list[discord.Embed] = field(default_factory=list)
    files: list[discord.File] = field(default_factory=list)
    view: discord.ui.View | None = None
    ephemeral: bool = False
    thinking: bool = False
    choices: list[app_commands.Choice[Any]] = field(default_factory=list)

    @property
    def embed(self) -> discord.Embed:
        assert len(self.embeds) == 1, f"{len(self.embeds)} embeds"
        return self.embeds[0]

    @property
    def text(self) -> str:
        """Everything a user can read: content and embeds, as one string."""
        parts = [self.content or ""]
        for embed in self.embeds:
            parts += [embed.title or "", embed.description or "",
                      embed.footer.text or ""]
            parts += [f"{f.name} {f.value}" for f in embed.fields]
        return "\n".join(parts)


def _listed(one: Any, many: Any) -> list[Any]:
    if many is not MISSING and many is not None:
        return list(many)
    return [] if one is MISSING or one is None else [one]


class RecordingResponse(discord.InteractionResponse[Any]):
    """An interaction's response that records instead of calling Discord (one response only,
    as Discord allows)."""

    def __init__(self, parent: FakeInteraction) -> None:
        super().__init__(parent)
        self.log = parent.sent

    def _once(self, kind: discord.InteractionResponseType) -> None:
        if self._response_type:
            raise discord.InteractionResponded(self._parent)
        self._response_type = kind

    async def defer(self, *, ephemeral: bool = False, thinking: bool = False) -> None:
        self._once(discord.InteractionResponseType.deferred_channel_message)
        self.log.append(Sent("defer", ephemeral=ephemeral, thinking=thinking))

    async def send_message(self, content: Any = None, *, embed: Any = MISSING,
                           embeds: Any = MISSING, file: Any = MISSING, files: Any = MISSING,
                           view: Any = MISSING, ephemeral: bool = False,
                           **_: Any) -> None:
        self._once(discord.InteractionResponseType.channel_message)
        self.log.append(Sent("message", content, _listed(embed, embeds), _listed(file, files),
                             None if view is MISSING else view, ephemeral))

    async def edit_message(self, *, content: Any = MISSING, embed: Any = MISSING,
                           embeds: Any = MISSING, view: Any = MISSING, **_: Any) -> None:
        self._once(discord.InteractionResponseType.message_update)
        self.log.append(Sent("edit", None if content is MISSING else content,
                             _listed(embed, embeds), view=None if view is MISSING else view))

    async def autocomplete(self, choices: Any) -> None:
        self._once(discord.InteractionResponseType.autocomplete_result)
        self.log.append(Sent("autocomplete", choices=list(choices)))


class FakeMessage:
    """What ``followup.send(wait=True)`` returns: a message that records its edits."""

    def __init__(self, log: list[Sent]) -> None:
        self.log = log

    async def edit(self, **kwargs: Any) -> FakeMessage:
        self.log.append(Sent("message edit", view=kwargs.get("view")))
        return self


class RecordingFollowup:
    """An interaction's follow-up webhook that records instead of calling Discord."""

    def __init__(self, parent: FakeInteraction) -> None:
        self.parent = parent

    async def send(self, content: Any = None, *, embed: Any = MISSING, embeds: Any = MISSING,
                   file: Any = MISSING, files: Any = MISSING, view: Any = MISSING,
                   ephemeral: bool = False, wait: bool = False, **_: Any) -> FakeMessage:
        if not self.parent.response.is_done():
            raise AssertionError("a follow-up before any response: Discord answers 404")
        self.parent.sent.append(Sent("followup", content, _listed(embed, embeds),
                                     _listed(file, files), None if view is MISSING else view,
                                     ephemeral))
        return FakeMessage(self.parent.sent)


def log_in(client: discord.Client) -> None:
    """Give the client the user it would have after logging in (guild payloads need it)."""
    client._connection.user = discord.ClientUser(
        state=client._connection, data={**_user(APPLICATION_ID), "bot": True})  # type: ignore


def _user(user_id: int) -> dict[str, Any]:
    return {"id": str(user_id), "username": f"user{user_id}", "discriminator": "0",
            "global_name": None, "avatar": None}


def _option(name: str, value: Any, *, focused: bool = False) -> dict[str, Any]:
    kind = (discord.AppCommandOptionType.boolean if isinstance(value, bool)
            else discord.AppCommandOptionType.integer if isinstance(value, int)
            else discord.AppCommandOptionType.number if isinstance(value, float)
            else discord.AppCommandOptionType.string)
    option: dict[str, Any] = {"type": kind.value, "name": name, "value": value}
    if focused:
        option["focused"] = True
    return option


class FakeInteraction(discord.Interaction[Any]):
    """A real interaction from a Discord payload whose replies are recorded in :attr:`sent`.

    Build one with :meth:`slash`, :meth:`typing` (autocomplete) or :meth:`press` (a button).
    (Not ``command``: that is the interaction's own property, which the tree reads.)
    """

    def __init__(self, client: discord.Client, kind: discord.InteractionType,
                 data: dict[str, Any], *, user_id: int = 1, guild_id: int | None = GUILD_ID,
                 permissions: discord.Permissions | None = None) -> None:
        self.sent: list[Sent] = []
        payload: dict[str, Any] = {
            "id": str(next(_ids)), "application_id": str(APPLICATION_ID), "token": "",
            "version": 1, "type": kind.value, "data": data, "locale": "en-US",
            "attachment_size_limit": 8 * 1024 * 1024,
            "channel": {"id": "555", "type": 0 if guild_id else 1, "name": "music",
                        "position": 0, "permission_overwrites": [], "nsfw": False,
                        "parent_id": None, "recipients": [_user(user_id)]}}
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
            payload["member"] = {
                "user": _user(user_id), "roles": [], "joined_at": "2024-01-01T00:00:00+00:00",
                "deaf": False, "mute": False, "flags": 0,
                "permissions": str((permissions or discord.Permissions.none()).value)}
        else:
            payload["user"] = _user(user_id)
        super().__init__(data=payload, state=client._connection)  # type: ignore[arg-type]
        self._recording = RecordingResponse(self)
        self._followup = RecordingFollowup(self)

    @property
    def response(self) -> RecordingResponse:  # type: ignore[override]
        return self._recording

    @property
    def followup(self) -> RecordingFollowup:  # type: ignore[override]
        return self._followup

    @classmethod
    def slash(cls, client: discord.Client, path: str, /, **options: Any) -> FakeInteraction:
        """A slash command: ``slash(bot, "mood track", query="...")``.

        Keyword arguments ``user_id``, ``guild_id`` and ``permissions`` set who asks, where.
        """
        who = {k: options.pop(k) for k in ("user_id", "guild_id", "permissions")
               if k in options}
        data = _nest(path, [_option(k, v) for k, v in options.items()])
        return cls(client, discord.InteractionType.application_command, data, **who)

    @classmethod
    def typing(cls, client: discord.Client, path: str, /, focused: str, value: str,
                     **options: Any) -> FakeInteraction:
        """An autocomplete request while the user types ``value`` into option ``focused``."""
        who = {k: options.pop(k) for k in ("user_id", "guild_id") if k in options}
        listed = [_option(k, v) for k, v in options.items()]
        listed.append(_option(focused, value, focused=True))
        return cls(client, discord.InteractionType.autocomplete, _nest(path, listed), **who)

    @classmethod
    def press(cls, client: discord.Client, item: discord.ui.Item[Any] | None = None, *,
              values: list[str] | None = None, **who: Any) -> FakeInteraction:
        """A button press, or a select's choice of ``values`` (see :func:`click`)."""
        data: dict[str, Any] = {"custom_id": getattr(item, "custom_id", "x"),
                                "component_type": 2 if values is None else 3}
        if values is not None:
            data["values"] = values
        return cls(client, discord.InteractionType.component, data, **who)


def _nest(path: str, options: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat-input payload of ``"group sub"`` with ``options`` on the innermost command."""
    names = path.split()
    for name in reversed(names[1:]):
        options = [{"type": discord.AppCommandOptionType.subcommand.value, "name": name,
                    "options": options}]
    return {"type": discord.AppCommandType.chat_input.value, "name": names[0],
            "id": str(hash(names[0]) & 0xFFFF), "options": options}


async def invoke(tree: app_commands.CommandTree[Any], interaction: discord.Interaction[Any]
                 ) -> None:
    """Run an interaction through the tree as the gateway handler does.

    discord.py's test drives ``CommandTree.call``; since 2.0 it is ``_call``, wrapped by
    ``_from_interaction`` exactly like this (the wrapper itself only schedules a task).
    """
    try:
        await tree._call(interaction)
    except app_commands.AppCommandError as error:
        await tree._dispatch_error(interaction, error)


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
    await view._scheduled_task(item, interaction)
    return interaction
