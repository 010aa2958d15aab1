"""Real Discord interactions that collect the bot's answers instead of posting them.

:class:`ConsoleInteraction` is a :class:`discord.Interaction` built from the payload Discord
would send (a slash command, an autocomplete request, a button press); only its two outlets
are replaced: ``response`` and ``followup`` record what the bot sends in :attr:`sent`.
:func:`invoke` hands one to the command tree as discord.py's gateway handler does, and
:func:`press` to a view as its view store does, so option parsing, checks, autocomplete,
callbacks and every error handler run as they do on Discord.

The console (``mer console``) is built on this; the tests' fakes reuse it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import discord
from discord import app_commands
from discord.utils import MISSING

#: Who and where the console is: one guild, one text channel, one user, the bot itself.
#: Constant, so that the console's history (``discord:1``) and answers persist across runs.
CONSOLE_GUILD_ID: Final = 1
CONSOLE_CHANNEL_ID: Final = 2
CONSOLE_USER_ID: Final = 3
CONSOLE_APPLICATION_ID: Final = 4


@dataclass
class Sent:
    """One thing the bot sent: a deferral, a reply, a follow-up, an edit or autocomplete.

    ``kind`` is ``defer``, ``message`` (the response), ``followup``, ``edit`` (the response
    edits the message of a button), ``message edit`` (a sent message edited later) or
    ``autocomplete``.
    """

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
        """The one embed sent (tests read it).

        Raises
        ------
        ValueError
            There is not exactly one.
        """
        if len(self.embeds) != 1:
            raise ValueError(f"{len(self.embeds)} embeds")
        return self.embeds[0]

    @property
    def text(self) -> str:
        """Everything a user can read: content and embeds, as one string."""
        parts = [self.content or ""]
        for embed in self.embeds:
            parts += [embed.title or "", embed.description or "", embed.footer.text or ""]
            parts += [f"{f.name} {f.value}" for f in embed.fields]
        return "\n".join(parts)


def _listed(one: Any, many: Any) -> list[Any]:
    if many is not MISSING and many is not None:
        return list(many)
    return [] if one is MISSING or one is None else [one]


def _given(value: Any) -> Any:
    return None if value is MISSING else value


class ConsoleResponse(discord.InteractionResponse[Any]):
    """An interaction's response that records instead of calling Discord (one response
    only, as Discord allows)."""

    def __init__(self, parent: ConsoleInteraction) -> None:
        super().__init__(parent)
        self.log = parent.sent

    def _once(self, kind: discord.InteractionResponseType) -> None:
        if self._response_type:
            raise discord.InteractionResponded(self._parent)
        self._response_type = kind

    async def defer(self, *, ephemeral: bool = False, thinking: bool = False) -> None:
        """Record a deferral ("thinking..." when ``thinking``)."""
        self._once(discord.InteractionResponseType.deferred_channel_message)
        self.log.append(Sent("defer", ephemeral=ephemeral, thinking=thinking))

    async def send_message(  # type: ignore[override]
            self, content: Any = None, *, embed: Any = MISSING, embeds: Any = MISSING,
            file: Any = MISSING, files: Any = MISSING, view: Any = MISSING,
            ephemeral: bool = False, **_: Any) -> None:
        """Record the reply."""
        self._once(discord.InteractionResponseType.channel_message)
        self.log.append(Sent("message", content, _listed(embed, embeds), _listed(file, files),
                             _given(view), ephemeral))

    async def edit_message(self, *, content: Any = MISSING, embed: Any = MISSING,
                           embeds: Any = MISSING, view: Any = MISSING, **_: Any) -> None:
        """Record the edit of the message whose button was pressed."""
        self._once(discord.InteractionResponseType.message_update)
        self.log.append(Sent("edit", _given(content), _listed(embed, embeds),
                             view=_given(view)))

    async def autocomplete(self, choices: Any) -> None:
        """Record the choices offered."""
        self._once(discord.InteractionResponseType.autocomplete_result)
        self.log.append(Sent("autocomplete", choices=list(choices)))


class ConsoleMessage:
    """A message the bot sent (``followup.send(wait=True)``): it records its edits.

    Parameters
    ----------
    log : list of Sent
        Where edits are recorded (the interaction's :attr:`~ConsoleInteraction.sent`).
    listener : callable, optional
        Called with each edit as it is made (the console shows edits made after the
        command answered, such as a retrain's progress).
    """

    def __init__(self, log: list[Sent], listener: Callable[[Sent], None] | None = None
                 ) -> None:
        self.id = next_snowflake()
        self.log = log
        self.listener = listener

    async def edit(self, *, content: Any = MISSING, embed: Any = MISSING,
                   embeds: Any = MISSING, view: Any = MISSING, **_: Any) -> ConsoleMessage:
        """Record the edit (``view=None`` removes the buttons)."""
        sent = Sent("message edit", _given(content), _listed(embed, embeds), view=_given(view))
        self.log.append(sent)
        if self.listener is not None:
            self.listener(sent)
        return self


class ConsoleFollowup:
    """An interaction's follow-up webhook that records instead of calling Discord."""

    def __init__(self, parent: ConsoleInteraction) -> None:
        self.parent = parent

    async def send(self, content: Any = None, *, embed: Any = MISSING, embeds: Any = MISSING,
                   file: Any = MISSING, files: Any = MISSING, view: Any = MISSING,
                   ephemeral: bool = False, wait: bool = False, **_: Any) -> ConsoleMessage:
        """Record a follow-up.

        Raises
        ------
        discord.NotFound
            No response came first (Discord answers 404 Unknown Webhook).
        """
        if not self.parent.response.is_done():
            raise _not_found("a follow-up before any response")
        self.parent.sent.append(Sent("followup", content, _listed(embed, embeds),
                                     _listed(file, files), _given(view), ephemeral))
        return self.parent.message_of_response()


class _Status:
    status = 404
    reason = "Not Found"


def _not_found(text: str) -> discord.NotFound:
    return discord.NotFound(_Status(), {"code": 10015, "message": text})  # type: ignore[arg-type]


_last_id = 0


def next_snowflake() -> int:
    """A new id made of the current time (interactions' ``created_at``, which cooldowns
    read), increasing within a millisecond."""
    global _last_id
    _last_id = max(discord.utils.time_snowflake(discord.utils.utcnow()), _last_id + 1)
    return _last_id


def user_payload(user_id: int) -> dict[str, Any]:
    """A user as Discord sends one."""
    return {"id": str(user_id), "username": f"user{user_id}", "discriminator": "0",
            "global_name": None, "avatar": None}


def log_in(client: discord.Client, application_id: int = CONSOLE_APPLICATION_ID) -> None:
    """Give the client the user it would have after logging in (guild payloads need it)."""
    data: Any = {**user_payload(application_id), "bot": True}
    client._connection.user = discord.ClientUser(state=client._connection, data=data)


class ConsoleInteraction(discord.Interaction[Any]):
    """A real interaction from a Discord payload whose replies are recorded in :attr:`sent`.

    Parameters
    ----------
    client : discord.Client
        The bot (logged in with :func:`log_in`).
    kind : discord.InteractionType
        ``application_command``, ``autocomplete`` or ``component``.
    data : dict
        The interaction's ``data`` payload.
    user_id, guild_id, channel_id, application_id : int
        Who asks, where (``guild_id`` None: a direct message), and to which application.
    permissions : discord.Permissions, optional
        The user's permissions in the channel (default: none).
    app_permissions : discord.Permissions, optional
        The bot's permissions there (default: none).
    interaction_id : int, optional
        Default :func:`next_snowflake` (now).
    """

    def __init__(self, client: discord.Client, kind: discord.InteractionType,
                 data: dict[str, Any], *, user_id: int = CONSOLE_USER_ID,
                 guild_id: int | None = CONSOLE_GUILD_ID,
                 channel_id: int = CONSOLE_CHANNEL_ID,
                 application_id: int = CONSOLE_APPLICATION_ID,
                 permissions: discord.Permissions | None = None,
                 app_permissions: discord.Permissions | None = None,
                 interaction_id: int | None = None) -> None:
        self.sent: list[Sent] = []
        #: Called with each edit of its messages (set once its answers were shown).
        self.listener: Callable[[Sent], None] | None = None
        payload: dict[str, Any] = {
            "id": str(interaction_id if interaction_id is not None else next_snowflake()),
            "application_id": str(application_id), "token": "", "version": 1,
            "type": kind.value, "data": data, "locale": "en-US",
            "attachment_size_limit": 8 * 1024 * 1024,
            "app_permissions": str((app_permissions or discord.Permissions.none()).value),
            "channel": {"id": str(channel_id), "type": 0 if guild_id else 1, "name": "music",
                        "position": 0, "permission_overwrites": [], "nsfw": False,
                        "parent_id": None, "recipients": [user_payload(user_id)]}}
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
            payload["member"] = {
                "user": user_payload(user_id), "roles": [],
                "joined_at": "2024-01-01T00:00:00+00:00", "deaf": False, "mute": False,
                "flags": 0,
                "permissions": str((permissions or discord.Permissions.none()).value)}
        else:
            payload["user"] = user_payload(user_id)
        super().__init__(data=payload, state=client._connection)  # type: ignore[arg-type]
        self._recording = ConsoleResponse(self)
        self._followup = ConsoleFollowup(self)

    @property
    def response(self) -> ConsoleResponse:
        """Records the one response."""
        return self._recording

    @property
    def followup(self) -> ConsoleFollowup:  # type: ignore[override]
        """Records follow-ups."""
        return self._followup

    def message_of_response(self) -> ConsoleMessage:
        """A message of this interaction, whose edits are recorded in :attr:`sent` and
        passed to :attr:`listener`."""
        return ConsoleMessage(self.sent, self._edited)

    def _edited(self, sent: Sent) -> None:
        if self.listener is not None:
            self.listener(sent)

    async def original_response(self) -> ConsoleMessage:  # type: ignore[override]
        """The message of the response, which records its edits."""
        if not self.response.is_done():
            raise _not_found("no response yet")
        return self.message_of_response()

    async def edit_original_response(self, **changes: Any) -> ConsoleMessage:  # type: ignore[override]
        """Record an edit of the response's message."""
        message = await self.original_response()
        return await message.edit(**changes)


def command_data(path: str, options: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat-input ``data`` of ``"group sub"`` with ``options`` on the innermost command.

    Each option is ``{"type": ..., "name": ..., "value": ...}`` as Discord sends it.
    """
    names = path.split()
    for depth, name in reversed(list(enumerate(names[1:], start=1))):
        kind = (discord.AppCommandOptionType.subcommand if depth == len(names) - 1
                else discord.AppCommandOptionType.subcommand_group)
        options = [{"type": kind.value, "name": name, "options": options}]
    return {"type": discord.AppCommandType.chat_input.value, "name": names[0],
            "id": str(hash(names[0]) & 0xFFFF), "options": options}


def component_data(item: discord.ui.Item[Any] | None,
                   values: list[str] | None = None) -> dict[str, Any]:
    """The ``data`` of a button press, or of a select's choice of ``values``."""
    data: dict[str, Any] = {"custom_id": getattr(item, "custom_id", None) or "x",
                            "component_type": 2 if values is None else 3}
    if values is not None:
        data["values"] = values
    return data


async def invoke(tree: app_commands.CommandTree[Any], interaction: discord.Interaction[Any]
                 ) -> None:
    """Run an interaction through the tree as the gateway handler does.

    discord.py's own tests drive ``CommandTree.call``; since 2.0 it is ``_call``, wrapped by
    ``_from_interaction`` exactly like this (the wrapper itself only schedules a task).
    """
    try:
        await tree._call(interaction)
    except app_commands.AppCommandError as error:
        await tree._dispatch_error(interaction, error)


async def press(view: discord.ui.View, item: discord.ui.Item[Any],
                interaction: discord.Interaction[Any]) -> None:
    """Press a view's button (or choose in its select) as discord.py's view store does:
    state from the payload, checks, the callback, and the view's ``on_error`` on failure."""
    await view._scheduled_task(item, interaction)
