"""The bot: :class:`MoodBot`, its command tree, the extensions it loads, and the queue hook.

The service is created outside the bot and handed to it (as discord.py's advanced start-up
example hands over a database pool); ``setup_hook`` loads the cogs as extensions and never
syncs the command tree: publishing commands is rate-limited and only needed when they
change, so the owner does it with ``@bot sync`` or ``mer bot sync``.

A bot built without a service can list and sync its commands but not run them
(``mer bot commands``, ``mer bot sync``): the cogs read the service only when a command runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import errors

if TYPE_CHECKING:
    from bot.discord.guilds import GuildSettings
    from bot.service import MoodService
    from bot.service.tracks import StoredTracks

logger = logging.getLogger(__name__)

#: The cogs ``setup_hook`` loads, in order. The queue (``bot.discord.cogs.queue``) and the
#: admin group (``bot.discord.cogs.admin``) join this list when they are written.
EXTENSIONS: Final[tuple[str, ...]] = (
    "bot.discord.cogs.owner",
    "bot.discord.cogs.mood",
    "bot.discord.cogs.queue",
    "bot.discord.cogs.admin",
    "bot.discord.cogs.companion",
)
#: Autocomplete shows at most this many choices (Discord's limit).
AUTOCOMPLETE_MAX: Final = 25
#: The name of the cog that owns the guild queues (see :class:`TrackQueue`).
QUEUE_COG: Final = "Queue"
#: What drawing the first chart imports (``freeze_heap`` imports it before freezing).
CHART_MODULES: Final = ("matplotlib.figure", "matplotlib.backends.backend_agg")
#: Where ``sync`` publishes: everywhere, to one guild at once (for testing), or nowhere in
#: one guild (undoing ``here``).
SyncTarget = Literal["global", "here", "clear"]


@runtime_checkable
class TrackQueue(Protocol):
    """What the mood commands need from the queue cog (registered as :data:`QUEUE_COG`).

    Until a cog of that name implements this, "Add to queue" and "Queue all" say that the
    queue is not available and ``/mood now`` that nothing is playing.
    """

    async def enqueue(self, guild_id: int, user_id: int, track_ids: Sequence[int]) -> str:
        """Queue stored tracks in a guild for a user; returns the line to show them.

        Raises
        ------
        ServiceError
            The tracks cannot be queued (the message says why).
        """
        ...

    async def now_playing(self, guild_id: int) -> int | None:
        """The stored track playing (or next) in a guild; None when nothing is."""
        ...


class MoodTree(app_commands.CommandTree["MoodBot"]):
    """The command tree, whose error handler is the fallback of every cog's own."""

    async def on_error(self, interaction: discord.Interaction[MoodBot],
                       error: app_commands.AppCommandError, /) -> None:
        """Tell the user in one short ephemeral line; log the traceback of a bug.

        A cog's ``cog_app_command_error`` that answered already marks the interaction
        (:data:`bot.discord.errors.ANSWERED`), and is not answered twice.
        """
        if interaction.extras.get(errors.ANSWERED):
            return
        command = interaction.command
        where = f"/{command.qualified_name}" if command is not None else "a command"
        await errors.report(interaction, error, where=where)


class MoodBot(commands.AutoShardedBot):
    """The mood bot: slash commands under ``/mood`` (and the cogs that join them).

    Parameters
    ----------
    service : MoodService or None
        The service, created and closed by the caller; None: a bot that only lists or syncs
        its commands.
    extensions : sequence of str
        Extensions ``setup_hook`` loads (default :data:`EXTENSIONS`).
    companion : bool
        Ask for the privileged message-content intent, which companion mode needs to read
        other bots' messages (``MER_DISCORD_COMPANION``; also to be enabled in the developer
        portal). Ignored when ``intents`` is given.
    freeze_heap : bool
        At the end of ``setup_hook``, freeze the objects start-up left alive
        (:func:`bot.service.heap.freeze_long_lived`, matplotlib imported first), so that
        full garbage collections no longer stall the event loop for hundreds of
        milliseconds. For the running bot (``mer bot run``); leave it off in tests.
    **options
        Passed to :class:`discord.ext.commands.AutoShardedBot` (``owner_ids``, ...).

    Notes
    -----
    No privileged intent is needed but companion mode's: slash commands arrive as
    interactions, and the owner's text command ``sync`` is addressed by mentioning the bot,
    whose message content Discord always delivers.
    """

    def __init__(self, service: MoodService | None, *,
                 extensions: Sequence[str] = EXTENSIONS, companion: bool = False,
                 freeze_heap: bool = False, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = companion
        options.setdefault("intents", intents)
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        super().__init__(command_prefix=commands.when_mentioned, tree_cls=MoodTree,
                         help_command=None, **options)
        self._service = service
        self._tracks: StoredTracks | None = None
        self._guilds: GuildSettings | None = None
        self.initial_extensions = tuple(extensions)
        self.freeze_heap = freeze_heap

    async def setup_hook(self) -> None:
        """Load the extensions (then freeze the heap with ``freeze_heap``); the command
        tree is not synced here (see ``sync``)."""
        for extension in self.initial_extensions:
            await self.load_extension(extension)
        logger.info("loaded %s; %d slash commands ready (not synced)",
                    ", ".join(self.initial_extensions), len(self.tree.get_commands()))
        if self.freeze_heap:
            from bot.service.heap import freeze_long_lived

            frozen = freeze_long_lived(CHART_MODULES)
            logger.info("froze %d start-up objects (short garbage collections)", frozen)

    @property
    def service(self) -> MoodService:
        """The service the commands call.

        Raises
        ------
        RuntimeError
            The bot was built without one (to list or sync commands).
        """
        if self._service is None:
            raise RuntimeError("this bot was built without a service: it can list and sync "
                               "its commands, not run them")
        return self._service

    @property
    def has_service(self) -> bool:
        """Whether commands can run (False: a bot that only lists or syncs them)."""
        return self._service is not None

    @property
    def tracks(self) -> StoredTracks:
        """The stored library as pickers need it (search, stored moods, feedback)."""
        if self._tracks is None:
            from bot.service.tracks import StoredTracks

            self._tracks = StoredTracks(self.service)
        return self._tracks

    @property
    def guild_settings(self) -> GuildSettings:
        """Each guild's settings (suggestion channel, auto-suggest, auto-DJ, companion)."""
        if self._guilds is None:
            from bot.discord.guilds import GuildSettings

            self._guilds = GuildSettings(self.service)
        return self._guilds

    async def library_choices(self, current: str) -> list[app_commands.Choice[str]]:
        """Autocomplete choices of stored tracks for what was typed (at most 25, Discord's
        limit), each named ``Artist - Title`` and valued by its ``track:<id>`` reference."""
        from bot.discord.render import shorten

        matches = await self.tracks.search(current, limit=AUTOCOMPLETE_MAX)
        return [app_commands.Choice(name=shorten(m.name, 100), value=m.ref) for m in matches]

    def track_queue(self) -> TrackQueue | None:
        """The queue cog, when one is loaded and implements :class:`TrackQueue`."""
        cog = self.get_cog(QUEUE_COG)
        return cog if isinstance(cog, TrackQueue) else None


def history_scope(interaction: discord.Interaction[Any]) -> str:
    """Where an interaction's music is heard, for the listening history:
    ``discord:<guild id>``, or ``discord:dm:<user id>`` in direct messages."""
    if interaction.guild_id is not None:
        return f"discord:{interaction.guild_id}"
    return f"discord:dm:{interaction.user.id}"


def command_payloads(tree: app_commands.CommandTree[Any]) -> list[dict[str, Any]]:
    """The commands exactly as :meth:`CommandTree.sync` would publish them globally.

    Each is the payload of ``to_dict``: name, description, options (with their choices and
    autocomplete flags), ``default_member_permissions``, contexts.
    """
    return [command.to_dict(tree) for command in tree.get_commands()]


async def offline_payloads(extensions: Sequence[str] = EXTENSIONS) -> list[dict[str, Any]]:
    """Build the bot without a service or a connection, and give :func:`command_payloads`."""
    async with MoodBot(None, extensions=extensions) as bot:
        await bot.setup_hook()
        return command_payloads(bot.tree)


async def sync_tree(tree: app_commands.CommandTree[Any], target: SyncTarget,
                    guild: discord.abc.Snowflake | None = None) -> list[app_commands.AppCommand]:
    """Publish the commands.

    Parameters
    ----------
    tree : CommandTree
        The bot's tree (its client must be logged in).
    target : {"global", "here", "clear"}
        ``global``: every guild (the normal case); ``here``: copy them to ``guild`` only,
        where they appear at once (for testing); ``clear``: remove ``guild``'s own copies.
    guild : Snowflake, optional
        The guild, for ``here`` and ``clear``.

    Returns
    -------
    list of AppCommand
        What Discord now has for that target.

    Raises
    ------
    ValueError
        ``here`` or ``clear`` without a guild.
    discord.HTTPException
        Discord refused.
    """
    if target == "global":
        return await tree.sync()
    if guild is None:
        raise ValueError(f"sync {target}: name a guild")
    if target == "here":
        tree.copy_global_to(guild=guild)
    else:
        tree.clear_commands(guild=guild)
    return await tree.sync(guild=guild)
