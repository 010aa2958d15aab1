"""The ``/mood-admin`` group: the models (retrain, rollback, status, reload, prune), a
server's settings, and users' answers as training labels (``feedback-export``).

Only members who may manage the server see the group (``default_member_permissions``), and
since a server can override that default, every command also checks at run time that the
member has Manage Server in the channel. ``retrain`` and ``rollback`` change the models every
server hears and ``prune`` deletes moods stored for every server, so they are for the bot's
owner alone, as is ``feedback-export``, whose CSV holds the answers given in every server
(counts only, no user ids). The work is the service's
(:class:`~bot.service.models_admin.ModelAdmin` through :class:`~bot.service.MoodService`);
this cog parses, checks and renders.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord import errors
from bot.discord.bot import MoodBot
from bot.discord.cogs.mood.cog import PERIODS, Period
from bot.service import ServiceError

if TYPE_CHECKING:
    from bot.discord.guilds import GuildConfig
    from bot.service.models_admin import AdminStatus, ModelAdmin, RetrainResult

logger = logging.getLogger(__name__)

Interaction = discord.Interaction[MoodBot]
T = TypeVar("T")

#: What a member who is not the bot's owner is told by ``retrain`` and ``rollback``.
OWNER_ONLY: Final = "Only the bot's owner can do that."
#: Shortest interval between two edits of the retrain message, in seconds (Discord allows
#: about five edits per 5 s per channel; one per 2 s leaves room for everything else).
EDIT_EVERY_S: Final = 2.0
#: An interaction's token expires after 15 minutes; past this age the retrain message is
#: edited as the bot's own message in its channel instead.
TOKEN_LIFETIME_S: Final = 14 * 60.0
_OUTCOMES = {"worse": "kept the live models", "crashed": "failed", "timeout": "timed out",
             "refused": "refused", "cancelled": "cancelled"}
_FIGURES = {"cv_macro_f1_mean": "macro-F1", "cv_accuracy_mean": "accuracy",
            "cv_valence_accuracy_mean": "valence", "cv_arousal_accuracy_mean": "arousal"}
_CHANNEL_CHOICES = [app_commands.Choice(name="suggestion channel", value="suggest_channel"),
                    app_commands.Choice(name="companion channel", value="companion_channel")]


class NotOwner(app_commands.CheckFailure):
    """The member is not the bot's owner."""


def owner_only() -> Callable[[T], T]:
    """A check: only the bot's owners (the application's owner or team) pass."""

    async def predicate(interaction: Interaction) -> bool:
        if not await interaction.client.is_owner(interaction.user):
            raise NotOwner(OWNER_ONLY)
        return True

    return app_commands.check(predicate)


@app_commands.default_permissions(manage_guild=True)
@app_commands.guild_only()
class Admin(commands.GroupCog, group_name="mood-admin",
            group_description="Manage the mood models and this server's settings"):
    """The ``/mood-admin`` group.

    Parameters
    ----------
    bot : MoodBot
        The bot; its service is read when a command runs.
    """

    def __init__(self, bot: MoodBot) -> None:
        self.bot = bot
        #: The retrain under way in the background (None: none since the cog loaded).
        self.retrain_task: asyncio.Task[None] | None = None
        self._retraining = False
        super().__init__()

    async def cog_unload(self) -> None:
        """Stop a retrain under way (its training process is killed, the job recorded)."""
        if self.retrain_task is not None and not self.retrain_task.done():
            self.retrain_task.cancel()
            await asyncio.gather(self.retrain_task, return_exceptions=True)

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        """Manage Server in this channel, whatever the server set as the group's default.

        Raises
        ------
        NoPrivateMessage
            Outside a server.
        MissingPermissions
            The member lacks Manage Server.
        """
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        permissions = interaction.permissions
        if not (permissions.manage_guild or permissions.administrator):
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    async def cog_app_command_error(self, interaction: discord.Interaction[Any],
                                    error: app_commands.AppCommandError) -> None:
        """Refusals answered in one line; anything else falls through to the tree, which logs."""
        if isinstance(error, NotOwner):
            logger.info("%s refused: not the owner (user %s)", _where(interaction),
                        interaction.user.id)
            interaction.extras[errors.ANSWERED] = True
            await errors.reply_privately(interaction, OWNER_ONLY)
        elif errors.user_message(error) is not None:
            await errors.report(interaction, error, where=_where(interaction))

    # --- models ------------------------------------------------------------------------------

    @app_commands.command(name="retrain")
    @owner_only()
    async def retrain(self, interaction: Interaction) -> None:
        """Retrain the models; they go live only if no worse on the validation folds."""
        admin = self._admin()
        admin.refuse_if_pinned("retrain")
        if self._retraining or admin.running:
            raise ServiceError("A retrain is already running: `/mood-admin status` shows it.")
        self._retraining = True  # before any await: a second retrain is refused from here on
        try:
            await interaction.response.defer(thinking=True)
            message = await interaction.followup.send("⏳ Retraining: starting…", wait=True)
            progress = ProgressMessage(interaction, message)
            self.retrain_task = asyncio.create_task(
                self._run_retrain(progress, requested_by=f"discord:{interaction.user.id}"),
                name="mood-admin retrain")
        except BaseException:
            self._retraining = False
            raise

    async def _run_retrain(self, progress: ProgressMessage, *, requested_by: str) -> None:
        try:
            result = await self.bot.service.retrain_models(requested_by=requested_by,
                                                           progress=progress.update)
        except asyncio.CancelledError:
            await progress.finish("⏹️ Retrain cancelled: the bot is stopping. The live models "
                                  "were not changed.")
            raise
        except ServiceError as exc:
            await progress.finish(f"❌ {exc}")
        except Exception:
            logger.exception("/mood-admin retrain failed")
            await progress.finish(f"❌ {errors.GENERIC}")
        else:
            await progress.finish(_outcome(result, self.bot.service.versions))
        finally:
            self._retraining = False

    @app_commands.command(name="rollback")
    @owner_only()
    async def rollback(self, interaction: Interaction) -> None:
        """Serve the previous model set again."""
        self._admin().refuse_if_pinned("roll back")
        await interaction.response.defer(ephemeral=True, thinking=True)
        live = await self.bot.service.rollback_models()
        await interaction.followup.send(
            f"↩️ Rolled back: set **{live.id}** is live, serving "
            f"{_versions(self.bot.service.versions)}.", ephemeral=True)

    @app_commands.command(name="status")
    async def status(self, interaction: Interaction) -> None:
        """The live models, their cards and figures, and the recent retrains."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        status = await self._admin().status()
        await interaction.followup.send(embed=status_embed(status, self.bot.service.versions),
                                        ephemeral=True)

    @app_commands.command(name="reload")
    @app_commands.checks.cooldown(1, 30.0, key=lambda interaction: id(interaction.client))
    async def reload(self, interaction: Interaction) -> None:
        """Load the live models again from disk."""
        # The cooldown is the bot's, not a user's or a server's: there is one engine.
        await interaction.response.defer(ephemeral=True, thinking=True)
        versions = await self.bot.service.reload_models()
        await interaction.followup.send(f"🔄 Reloaded: serving {_versions(versions)}.",
                                        ephemeral=True)

    @app_commands.command(name="prune")
    @owner_only()
    async def prune(self, interaction: Interaction) -> None:
        """Delete the stored moods of models no longer served (they are never shown again)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        service = self.bot.service
        stale = [count for key, count in await service.stored_model_sets()
                 if key != service.models_key]
        if not stale:
            await interaction.followup.send(
                "Nothing to prune: every stored mood is the live models'.", ephemeral=True)
            return
        deleted = await service.prune_predictions()
        logger.info("%s pruned %d stored moods of %d older model sets", _where(interaction),
                    deleted, len(stale))
        await interaction.followup.send(
            f"🧹 Deleted {_plural(deleted, 'stored mood')} of "
            f"{_plural(len(stale), 'older model set')}; tracks, answers and history stay, and "
            "older models coming back would classify the tracks again.", ephemeral=True)

    # --- this server ----------------------------------------------------------------------

    @app_commands.command(name="settings")
    @app_commands.describe(
        suggest_channel="Where now-playing embeds and suggestions are posted",
        auto_suggest="Post a now-playing embed with three suggestions when a track starts",
        auto_dj="Append a mood-matched track when the queue runs low",
        companion_channel="Companion mode: the channel whose music-bot messages get a mood",
        turn_off="Turn a channel setting off")
    @app_commands.choices(turn_off=_CHANNEL_CHOICES)
    async def settings(self, interaction: Interaction,
                       suggest_channel: discord.TextChannel | None = None,
                       auto_suggest: bool | None = None, auto_dj: bool | None = None,
                       companion_channel: discord.TextChannel | None = None,
                       turn_off: app_commands.Choice[str] | None = None) -> None:
        """Show this server's settings, or change the ones given."""
        assert interaction.guild_id is not None  # interaction_check
        changes: dict[str, Any] = {}
        if suggest_channel is not None:
            changes["suggest_channel_id"] = suggest_channel.id
        if companion_channel is not None:
            changes["companion_channel_id"] = companion_channel.id
        if turn_off is not None:
            key = f"{turn_off.value}_id"
            if key in changes:
                raise ServiceError(f"Give the {turn_off.name} or turn it off, not both.")
            changes[key] = None
        if auto_suggest is not None:
            changes["auto_suggest"] = auto_suggest
        if auto_dj is not None:
            changes["auto_dj"] = auto_dj
        guilds = self.bot.guild_settings
        if changes:
            config = await guilds.update(interaction.guild_id, **changes)
        else:
            config = await guilds.get(interaction.guild_id)
        note = _cannot_post(interaction, [c for c in (suggest_channel, companion_channel) if c])
        await interaction.response.send_message(
            note, embed=settings_embed(config, changed=bool(changes)), ephemeral=True)

    # --- data exports --------------------------------------------------------------------

    @app_commands.command(name="feedback-export")
    @app_commands.describe(period="Answers given in the last day, week, month, or ever")
    @owner_only()
    @app_commands.checks.cooldown(1, 60.0)
    async def feedback_export(self, interaction: Interaction,
                              period: Period = "all") -> None:
        """Users' Right/Wrong answers as a CSV that `python -m train --feedback` accepts."""
        from bot.service.feedback import export_feedback

        await interaction.response.defer(thinking=True, ephemeral=True)
        length = PERIODS[period]
        since = datetime.now(UTC) - length if length is not None else None
        # The previews of catalogue tracks are fetched again so that the rows carry audio.
        export = await export_feedback(self.bot.service, since=since, fetch_audio=True)
        await interaction.followup.send(
            export.summary(), ephemeral=True,
            file=discord.File(io.BytesIO(export.data), filename=export.filename))

    # --- helpers ---------------------------------------------------------------------------

    def _admin(self) -> ModelAdmin:
        admin = self.bot.service.models_admin
        if admin is None:
            raise ServiceError("The models cannot be managed from Discord in this setup.")
        return admin


class ProgressMessage:
    """The one message a retrain edits as it goes, at most every :data:`EDIT_EVERY_S`.

    Parameters
    ----------
    interaction : Interaction
        The ``retrain`` command.
    message : discord.WebhookMessage
        Its follow-up message (``followup.send(wait=True)``).
    """

    def __init__(self, interaction: Interaction, message: Any) -> None:
        self._interaction = interaction
        self._message = message
        self._created = time.monotonic()
        self._last_edit = -float("inf")

    async def update(self, line: str) -> None:
        """Show the newest line of the training output (dropped when the last edit was
        under :data:`EDIT_EVERY_S` ago)."""
        now = time.monotonic()
        if now - self._last_edit < EDIT_EVERY_S:
            return
        self._last_edit = now
        shown = line.replace("`", "'")
        shown = shown if len(shown) <= 150 else shown[:149] + "…"
        await self._edit(f"⏳ Retraining… `{shown}`")

    async def finish(self, text: str) -> None:
        """Replace the message with the outcome."""
        await self._edit(text)

    async def _edit(self, content: str) -> None:
        try:
            if time.monotonic() - self._created < TOKEN_LIFETIME_S:
                await self._message.edit(content=content)
                return
            channel = self._interaction.channel  # the token expired: edit as the bot
            if isinstance(channel, discord.abc.Messageable) and hasattr(
                    channel, "get_partial_message"):
                await channel.get_partial_message(self._message.id).edit(content=content)
        except discord.HTTPException as exc:
            logger.warning("could not update the retrain message: %s", exc)


def status_embed(status: AdminStatus, serving: dict[str, str]) -> discord.Embed:
    """The ``status`` answer: live set, its models and figures, rollback, recent jobs."""
    live = status.live
    notes = [f"Live set **{live.id}**" + (" (pinned by MER_MODELS_DIR)" if status.pinned
                                          else "")]
    if status.running:
        notes.append("A retrain is running.")
    embed = discord.Embed(title="Mood models", description="\n".join(notes),
                          colour=discord.Colour.blurple())
    embed.add_field(name="Serving", value=_versions(serving) or "nothing", inline=False)
    lines = [f"`{m.display_name}` {m.kind}, weight {m.fusion_weight:.2f}"
             + (f", CV macro-F1 {m.macro_f1:.3f}" if m.macro_f1 is not None else "")
             for m in live.models]
    embed.add_field(name="Models of the live set", value=_cut("\n".join(lines) or "none"),
                    inline=False)
    figures = " · ".join(f"{label} {live.figures[key]:.3f}" for key, label in _FIGURES.items()
                         if key in live.figures)
    embed.add_field(name="Validation (out-of-fold, artist-disjoint folds)",
                    value=figures or "the cards carry no figures", inline=False)
    embed.add_field(name="Rollback goes to",
                    value=status.previous[-1] if status.previous else "nothing earlier",
                    inline=False)
    jobs = [f"#{job.id} **{job.outcome}** <t:{int(job.created_at.timestamp())}:R>"
            + (f": {_shorten(job.reason, 90)}" if job.reason else "") for job in status.jobs]
    embed.add_field(name="Recent retrains", value=_cut("\n".join(jobs) or "none yet"),
                    inline=False)
    return embed


def settings_embed(config: GuildConfig, *, changed: bool) -> discord.Embed:
    """A server's settings (after a change, titled so)."""
    embed = discord.Embed(title="Settings saved" if changed else "This server's settings",
                          colour=discord.Colour.blurple())
    embed.add_field(name="Suggestion channel", value=_channel(config.suggest_channel_id))
    embed.add_field(name="Auto-suggest", value=_on(config.auto_suggest))
    embed.add_field(name="Auto-DJ", value=_on(config.auto_dj))
    embed.add_field(name="Companion channel", value=_channel(config.companion_channel_id))
    return embed


def _outcome(result: RetrainResult, serving: dict[str, str]) -> str:
    took = f"{result.seconds / 60:.1f} min" if result.seconds >= 60 else f"{result.seconds:.0f} s"
    if result.installed:
        return (f"✅ Retrained in {took}: {result.reason}. Serving {_versions(serving)}. "
                f"(job #{result.job_id})")
    return (f"❌ Retrain {_OUTCOMES.get(result.outcome, result.outcome)} after {took}: "
            f"{result.reason}. (job #{result.job_id})")


def _cannot_post(interaction: Interaction, channels: list[discord.TextChannel]) -> str | None:
    me = interaction.guild.me if interaction.guild is not None else None
    if me is None:
        return None
    blocked = [c.mention for c in channels if not c.permissions_for(me).send_messages]
    return f"Note: I cannot send messages in {', '.join(blocked)} yet." if blocked else None


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _versions(versions: dict[str, str]) -> str:
    return ", ".join(f"`{v}`" for v in versions.values())


def _channel(channel_id: int | None) -> str:
    return f"<#{channel_id}>" if channel_id is not None else "off"


def _on(value: bool) -> str:
    return "on" if value else "off"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _cut(text: str) -> str:
    return _shorten(text, 1024)  # an embed field's limit


def _where(interaction: discord.Interaction[Any]) -> str:
    command = interaction.command
    return f"/{command.qualified_name}" if command is not None else "/mood-admin"


async def setup(bot: MoodBot) -> None:
    """Extension entry point."""
    await bot.add_cog(Admin(bot))
