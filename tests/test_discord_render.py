"""What the bot shows and says, without Discord: embeds, charts, error lines, the command
listing; and the owner's ``sync`` text command run through the bot's command processing."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.discord.bot import MoodBot, offline_payloads, sync_tree
from bot.discord.errors import GENERIC, user_message
from bot.discord.main import Refused, _connected, describe
from bot.discord.render import bar, mix_embed, picks_embed, track_embed
from bot.service import MoodResult, ServiceError, TrackMood
from bot.service.charts import plot_mix, plot_track
from bot.service.recommendations import Pick
from bot.service.tracks import MoodMix
from bot.storage.store import StoredMood
from mer_models.result import WindowResult
from tests.fakes.interactions import APPLICATION_ID, GUILD_ID, log_in

PNG = b"\x89PNG\r\n\x1a\n"


def _result(probabilities: dict[str, float], windows: int = 3) -> MoodResult:
    return MoodResult(input="x", probabilities=probabilities,
                      windows=[WindowResult(5.0 * i, 5.0 * i + 5.0, dict(probabilities))
                               for i in range(windows)],
                      models={"cldnn": "mood-4q-cldnn-1", "ensemble": "mood-4q-ensemble-1"})


def _stored(track_id: int, title: str, quadrant: str) -> StoredMood:
    return StoredMood(track_id, title, "Artist", 180.0, quadrant, 0.8, 0.8, 0.9, None,
                      "deezer", "https://example.com/t")


# --- embeds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("share", "expected"), [
    (0.0, "░" * 12), (1.0, "█" * 12), (0.5, "█" * 6 + "░" * 6), (1.7, "█" * 12),
    (-0.2, "░" * 12)])
def test_bar_fills_in_proportion(share: float, expected: str) -> None:
    assert bar(share) == expected


def test_track_embed_shows_the_mood_and_its_numbers() -> None:
    mood = TrackMood(1, "**Live** at _Home_", "A" * 300, "deezer",
                     _result({"Q1": 0.1, "Q2": 0.05, "Q3": 0.15, "Q4": 0.7}), cached=False)
    embed = track_embed(mood)
    assert embed.title is not None and len(embed.title) <= 256 and embed.title.endswith("…")
    assert embed.description == "😌 **calm** · 70% sure"
    assert embed.colour == discord.Colour(0x009E73)
    fields = {f.name: f.value for f in embed.fields}
    assert fields["Valence"] == "0.80 · positive"
    assert fields["Arousal"] == "0.15 · low energy"
    assert "70%" in fields["Mood probabilities"].splitlines()[4]
    assert embed.footer.text is not None and embed.footer.text.startswith(
        "classified just now · 3 windows · mood-4q-cldnn-1")

    short = TrackMood(2, "**Live**", "", "local", mood.result, cached=True)
    assert track_embed(short).title == "\\*\\*Live\\*\\*"  # markdown shown, not applied


def test_picks_embed_numbers_escapes_and_fits_the_limit() -> None:
    picks = [Pick(_stored(i, f"Song_{i}", "Q1"), "x" * 300) for i in range(60)]
    embed = picks_embed(picks, title="Lots", note="found 60 of 80")
    text = embed.description or ""
    assert len(text) <= 4096 and text.splitlines()[-1].startswith("… and ")
    assert text.startswith("` 1.` 😄 **Artist - Song\\_0**")
    assert embed.footer.text == "found 60 of 80"
    assert picks_embed([], title="None").description == "Nothing fits."


def test_mix_embed_counts_and_shares() -> None:
    mix = MoodMix({"Q1": 1, "Q2": 0, "Q3": 3, "Q4": 0}, "discord:1", None)
    embed = mix_embed(mix, title="t")
    rows = (embed.description or "").strip("`\n").splitlines()
    assert [r.split()[-2:] for r in rows] == [["1", "25%"], ["0", "0%"], ["3", "75%"],
                                              ["0", "0%"]]
    assert embed.footer.text == "4 tracks · mostly sad"


# --- charts -----------------------------------------------------------------------------------


def test_track_and_mix_charts_are_pngs() -> None:
    out = plot_track(_result({"Q1": 0.5, "Q2": 0.2, "Q3": 0.1, "Q4": 0.2}), io.BytesIO(),
                     title="t", library=[_stored(1, "a", "Q2")])
    assert out.getvalue().startswith(PNG)
    assert plot_mix({"Q1": 2, "Q3": 1}, io.BytesIO(), title="t").getvalue().startswith(PNG)
    with pytest.raises(ServiceError, match="no tracks"):
        plot_mix({"Q1": 0}, io.BytesIO(), title="t")


# --- error lines ------------------------------------------------------------------------------


def _invoke_error(original: Exception) -> app_commands.CommandInvokeError:
    command = app_commands.Command(name="x", description="x", callback=_noop)
    return app_commands.CommandInvokeError(command, original)


async def _noop(interaction: discord.Interaction[Any]) -> None:
    return None


@pytest.mark.parametrize(("error", "expected"), [
    (_invoke_error(ServiceError("no track matches 'x'")), "no track matches 'x'"),
    (ServiceError("postgresql://bob:hunter2@db/mood is down"), "postgresql://***@db/mood is down"),
    (app_commands.CommandOnCooldown(app_commands.Cooldown(1, 10.0), 4.2),
     "Easy there: you can use this command again in 5 s."),
    (app_commands.NoPrivateMessage(), "This command works in servers only."),
    (app_commands.MissingPermissions(["manage_guild"]),
     "You need the manage server permission for this."),
    (app_commands.CheckFailure(), "You cannot use this command here."),
])
def test_expected_failures_get_one_short_line(error: Exception, expected: str) -> None:
    assert user_message(error) == expected


@pytest.mark.parametrize("error", [_invoke_error(KeyError("x")), RuntimeError("boom")])
def test_bugs_get_no_line_of_their_own(error: Exception) -> None:
    assert user_message(error) is None
    assert "Traceback" not in GENERIC


def test_a_long_service_message_is_cut_for_discord() -> None:
    text = user_message(ServiceError("x" * 5000))
    assert text is not None and len(text) <= 2000


# --- the command listing ----------------------------------------------------------------------


async def test_describe_lists_every_command_with_its_options() -> None:
    lines = describe(await offline_payloads())
    assert [line.split("  ")[0] for line in lines][:12] == [
        "/mood track <query>",
        "/mood now",
        "/mood recommend [mood:happy|tense|sad|calm] [like] [n:integer]",
        "/mood journey <from:happy|tense|sad|calm> <to:happy|tense|sad|calm> [steps:integer]",
        "/mood stats [period:day|week|month|all]",
        "/queue add <query>", "/queue list", "/queue skip", "/queue remove <position:integer>",
        "/queue clear", "/queue join", "/queue leave",
    ]
    admin = {"name": "mood-admin", "description": "Admins", "type": 1,
             "default_member_permissions": str(discord.Permissions(manage_guild=True).value),
             "options": [{"name": "status", "description": "Live models", "type": 1}]}
    assert describe([admin]) == ["/mood-admin status  Live models  (needs: manage_guild)"]


# --- syncing ----------------------------------------------------------------------------------


class RecordingTree:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def copy_global_to(self, *, guild: Any) -> None:
        self.calls.append(("copy", guild.id))

    def clear_commands(self, *, guild: Any) -> None:
        self.calls.append(("clear", guild.id))

    async def sync(self, *, guild: Any = None) -> list[Any]:
        self.calls.append(("sync", None if guild is None else guild.id))
        return []


@pytest.mark.parametrize(("target", "calls"), [
    ("global", [("sync", None)]),
    ("here", [("copy", 9), ("sync", 9)]),
    ("clear", [("clear", 9), ("sync", 9)]),
])
async def test_sync_targets(target: Any, calls: list[tuple[str, Any]]) -> None:
    tree = RecordingTree()
    await sync_tree(tree, target, discord.Object(id=9))  # type: ignore[arg-type]
    assert tree.calls == calls


async def test_sync_here_needs_a_guild() -> None:
    with pytest.raises(ValueError, match="name a guild"):
        await sync_tree(RecordingTree(), "here")  # type: ignore[arg-type]


@pytest.fixture
async def owned_bot(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MoodBot]:
    async with MoodBot(None, owner_ids={1}) as bot:
        log_in(bot)
        await bot.setup_hook()
        yield bot


def _message(bot: MoodBot, author_id: int, content: str) -> discord.Message:
    state = bot._connection
    guild = state._get_or_create_unavailable_guild(GUILD_ID)
    channel = discord.TextChannel(state=state, guild=guild, data={  # type: ignore[arg-type]
        "id": "555", "type": 0, "name": "music", "position": 0,
        "permission_overwrites": [], "nsfw": False, "parent_id": None})
    author = {"id": str(author_id), "username": "someone", "discriminator": "0",
              "avatar": None}
    return discord.Message(state=state, channel=channel, data={  # type: ignore[arg-type]
        "id": "1", "channel_id": "555", "guild_id": str(GUILD_ID), "author": author,
        "content": content, "timestamp": "2024-01-01T00:00:00+00:00",
        "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [],
        "mention_roles": [], "attachments": [], "embeds": [], "pinned": False, "type": 0})


async def test_only_the_owner_syncs_by_mentioning_the_bot(
        owned_bot: MoodBot, monkeypatch: pytest.MonkeyPatch) -> None:
    replies: list[str] = []
    synced: list[Any] = []

    async def reply(self: commands.Context[Any], content: str, **kwargs: Any) -> None:
        replies.append(content)

    async def sync(*, guild: Any = None) -> list[Any]:
        synced.append(guild.id if guild else None)
        return [object()] * 5

    monkeypatch.setattr(commands.Context, "reply", reply)
    monkeypatch.setattr(owned_bot.tree, "sync", sync)

    await owned_bot.process_commands(_message(owned_bot, 2, f"<@{APPLICATION_ID}> sync"))
    assert replies == ["Only the bot's owner can do that."] and synced == []

    await owned_bot.process_commands(_message(owned_bot, 1, f"<@{APPLICATION_ID}> sync here"))
    assert replies[-1] == "Synced 5 commands to this server."
    assert synced == [GUILD_ID]
    assert owned_bot.tree.get_commands(guild=discord.Object(GUILD_ID))  # copied there

    await owned_bot.process_commands(_message(owned_bot, 1, f"<@{APPLICATION_ID}> sync all"))
    assert replies[-1] == "Use `sync` with one of: global, here, clear."
    await owned_bot.process_commands(_message(owned_bot, 1, "sync"))  # not addressed to it
    assert len(replies) == 3 and synced == [GUILD_ID]


# --- start-up errors --------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "expected"), [
    (discord.LoginFailure("Improper token has been passed."), "Discord refused the token"),
    (OSError(101, "Network is unreachable"), "cannot reach Discord: OSError"),
])
async def test_start_up_failures_are_one_line(error: Exception, expected: str) -> None:
    async def login() -> None:
        raise error

    with pytest.raises(Refused) as refused:
        await _connected(login())
    assert str(refused.value).startswith(expected)
    assert "\n" not in str(refused.value)
