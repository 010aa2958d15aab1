"""The ``/mood-admin`` group through the command tree: who may use it, the models, settings.

The service is the Discord tests' real one (:mod:`tests.fakes.discord_fixtures`) with a model
admin over a temporary models home whose base set is the tiny test models; retraining runs
the stand-in training script of :mod:`tests.test_models_admin` (the real training command is
exercised there).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import discord
import pytest

from bot.discord.bot import MoodBot, offline_payloads
from bot.discord.cogs import admin as admin_cog
from bot.discord.cogs.admin import OWNER_ONLY, Admin
from bot.discord.errors import GENERIC
from bot.discord.guilds import GuildConfig
from bot.service import MoodService, ServiceError
from bot.service.models_admin import BASE_SET, ModelAdmin
from mer_models.engine import MoodEngine
from tests.fakes.interactions import GUILD_ID, FakeInteraction, Sent, invoke
from tests.test_models_admin import FAKE_TRAIN, LIVE_FIGURES, install_set, stopped, with_figures

OWNER = 1
MANAGER = 2
MANAGE = discord.Permissions(manage_guild=True)
SUGGEST, COMPANION = 888, 999
SUBCOMMANDS = ["retrain", "rollback", "status", "reload", "prune", "settings",
               "feedback-export"]


@pytest.fixture
def base(tiny_models_dir: Path, tmp_path: Path) -> Path:
    return with_figures(tiny_models_dir, tmp_path / "shipped", LIVE_FIGURES)


def edits(interaction: FakeInteraction) -> list[str]:
    """What the follow-up message was edited to, in order."""
    return [s.content or "" for s in interaction.sent if s.kind == "message edit"]


@pytest.fixture
async def admin_bot(bot: MoodBot, service: MoodService, base: Path, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MoodBot]:
    """The bot, owned by :data:`OWNER`, whose service has real (tiny) models and an admin
    that trains with the stand-in script (mode ``worse`` until a test changes it)."""
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    service.engine = MoodEngine(base, threads=1)
    service.models_admin = ModelAdmin(service.store, home=tmp_path / "home", base_dir=base,
                                      command=_fake(script, base, "worse", 0.3),
                                      progress_every_s=0)
    bot.owner_ids = {OWNER}
    _cache_guild(bot)
    # The extension's own module (load_extension executes a fresh copy of it): edit the
    # retrain message for every line, not at most every 2 s.
    monkeypatch.setattr(sys.modules[admin_cog.__name__], "EDIT_EVERY_S", 0.0)
    yield bot


def _fake(script: Path, base: Path, mode: str, f1: float = 0.9) -> list[str]:
    return [sys.executable, str(script), mode, str(base), str(f1), str(base.parent / "pid")]


def _cache_guild(bot: MoodBot) -> None:
    """The guild, with two text channels, as the gateway would have cached it."""
    state = bot._connection
    channels: list[dict[str, Any]] = [{"id": str(cid), "type": 0, "name": name, "position": i,
                 "permission_overwrites": [], "nsfw": False, "parent_id": None}
                for i, (cid, name) in enumerate([(SUGGEST, "suggestions"),
                                                 (COMPANION, "music-bot")])]
    data: Any = {
        "id": str(GUILD_ID), "name": "Test server", "owner_id": str(OWNER),
        "channels": channels, "member_count": 1,
        "roles": [{"id": str(GUILD_ID), "name": "@everyone", "permissions": "0",
                   "position": 0, "color": 0, "hoist": False, "managed": False,
                   "mentionable": False}]}
    state._add_guild(discord.Guild(data=data, state=state))


def _slash(bot: MoodBot, sub: str, *, channels: dict[str, int] | None = None,
           user_id: int = OWNER, permissions: discord.Permissions = MANAGE,
           **options: Any) -> FakeInteraction:
    """``/mood-admin <sub>``, with channel options resolved as Discord sends them."""
    if not channels:
        return FakeInteraction.slash(bot, f"mood-admin {sub}", user_id=user_id,
                                     permissions=permissions, **options)
    listed: list[dict[str, Any]] = [
        {"type": discord.AppCommandOptionType.channel.value, "name": name, "value": str(cid)}
        for name, cid in channels.items()]
    listed += [{"type": (discord.AppCommandOptionType.boolean if isinstance(value, bool)
                         else discord.AppCommandOptionType.string).value,
                "name": name, "value": value} for name, value in options.items()]
    sub_command = {"type": discord.AppCommandOptionType.subcommand.value, "name": sub,
                   "options": listed}
    data: dict[str, Any] = {"type": discord.AppCommandType.chat_input.value,
                            "name": "mood-admin", "id": "4711", "options": [sub_command]}
    data["resolved"] = {"channels": {str(cid): {"id": str(cid), "type": 0, "name": name,
                                                "permissions": "0"}
                                     for name, cid in channels.items()}}
    return FakeInteraction(bot, discord.InteractionType.application_command, data,
                           user_id=user_id, permissions=permissions)


def _cog(bot: MoodBot) -> Admin:
    cog = bot.get_cog("Admin")
    assert cog is not None and type(cog).__name__ == Admin.__name__
    return cast(Admin, cog)


def _admin(bot: MoodBot) -> ModelAdmin:
    assert bot.service.models_admin is not None
    return bot.service.models_admin


def _only_reply(interaction: FakeInteraction) -> Sent:
    replies = [s for s in interaction.sent if s.kind != "defer"]
    assert len(replies) == 1, replies
    return replies[0]


def _text(interaction: FakeInteraction) -> str:
    content = _only_reply(interaction).content
    assert content is not None
    return content


# --- who may use it -------------------------------------------------------------------------


async def test_the_group_is_published_for_server_managers_in_servers_only() -> None:
    payloads = await offline_payloads()
    group = next(p for p in payloads if p["name"] == "mood-admin")
    assert int(group["default_member_permissions"]) == MANAGE.value
    assert group["contexts"] == [0] and group["dm_permission"] is False  # servers only
    assert [o["name"] for o in group["options"]] == SUBCOMMANDS
    options = {o["name"]: o for o in group["options"][SUBCOMMANDS.index("settings")]["options"]}
    assert options["suggest_channel"]["type"] == discord.AppCommandOptionType.channel.value
    assert [c["value"] for c in options["turn_off"]["choices"]] == ["suggest_channel",
                                                                    "companion_channel"]


@pytest.mark.parametrize("sub", SUBCOMMANDS)
@pytest.mark.parametrize("permissions", [
    discord.Permissions.none(),
    # A server can override the default and let, say, moderators run the group: Discord
    # then delivers the command, and the runtime check still refuses it.
    discord.Permissions(manage_messages=True, kick_members=True, send_messages=True),
], ids=["no rights", "default overridden"])
async def test_a_member_without_manage_server_is_refused(
        admin_bot: MoodBot, sub: str, permissions: discord.Permissions) -> None:
    interaction = _slash(admin_bot, sub, user_id=OWNER, permissions=permissions)
    await invoke(admin_bot.tree, interaction)
    reply = _only_reply(interaction)
    assert reply.ephemeral
    assert reply.content == "You need the manage server permission for this."
    assert _cog(admin_bot).retrain_task is None
    assert await admin_bot.guild_settings.get(GUILD_ID) == GuildConfig()


async def test_an_administrator_passes_the_runtime_check(admin_bot: MoodBot) -> None:
    interaction = _slash(admin_bot, "settings", user_id=MANAGER,
                         permissions=discord.Permissions(administrator=True))
    await invoke(admin_bot.tree, interaction)
    assert _only_reply(interaction).embed.title == "This server's settings"


@pytest.mark.parametrize("sub", ["retrain", "rollback", "prune"])
async def test_retrain_rollback_and_prune_are_for_the_owner_only(admin_bot: MoodBot,
                                                           sub: str) -> None:
    interaction = _slash(admin_bot, sub, user_id=MANAGER)
    await invoke(admin_bot.tree, interaction)
    reply = _only_reply(interaction)
    assert (reply.content, reply.ephemeral) == (OWNER_ONLY, True)
    assert _cog(admin_bot).retrain_task is None
    assert (await _admin(admin_bot).status()).jobs == ()


# --- retrain ------------------------------------------------------------------------------------


async def test_retrain_edits_one_message_and_ends_with_why(admin_bot: MoodBot) -> None:
    before = admin_bot.service.engine
    interaction = _slash(admin_bot, "retrain")
    await invoke(admin_bot.tree, interaction)
    task = _cog(admin_bot).retrain_task
    assert task is not None  # the command returned; training goes on in the background
    await asyncio.wait_for(task, 60)

    defer, message = interaction.sent[:2]
    assert defer.kind == "defer" and defer.thinking and not defer.ephemeral
    assert (message.kind, message.content) == ("followup", "⏳ Retraining: starting…")
    edited = edits(interaction)
    assert [s.kind for s in interaction.sent[2:]] == ["message edit"] * len(edited)
    assert "⏳ Retraining… `stage: ensemble`" in edited
    assert "⏳ Retraining… `fold 4: macro-F1 0.3`" in edited
    assert edited[-1].startswith("❌ Retrain kept the live models after ")
    assert ("worse on the validation folds: macro-F1 0.3000 against the live models' 0.5000"
            in edited[-1])
    assert admin_bot.service.engine is before and _admin(admin_bot).live_dir().name == "shipped"


async def test_a_second_retrain_is_refused_while_one_runs(admin_bot: MoodBot,
                                                          base: Path) -> None:
    admin = _admin(admin_bot)
    admin.command = tuple(_fake(base.parent / "fake_train.py", base, "hang"))
    await invoke(admin_bot.tree, first := _slash(admin_bot, "retrain"))
    for _ in range(300):  # until the training printed something
        if any("epoch" in e for e in edits(first)):
            break
        await asyncio.sleep(0.1)
    assert admin.running

    second = _slash(admin_bot, "retrain")
    await invoke(admin_bot.tree, second)
    assert _only_reply(second).ephemeral
    assert _text(second).startswith("A retrain is already running")

    await _cog(admin_bot).cog_unload()  # the bot stops: the training is stopped with it
    assert await stopped(int((base.parent / "pid").read_text()))
    assert edits(first)[-1].startswith("⏹️ Retrain cancelled")
    assert not admin.running and (await admin.status()).jobs[0].outcome == "cancelled"
    assert first.sent[1].content == "⏳ Retraining: starting…"


# --- rollback, status, reload --------------------------------------------------------------------


async def test_rollback_without_an_earlier_set_says_so(admin_bot: MoodBot) -> None:
    interaction = _slash(admin_bot, "rollback")
    await invoke(admin_bot.tree, interaction)
    reply = _only_reply(interaction)
    assert reply.ephemeral
    assert reply.content == "There is no earlier model set to roll back to."


async def test_rollback_serves_the_previous_set(admin_bot: MoodBot, base: Path) -> None:
    install_set(_admin(admin_bot).home, base, "v5", "5")
    await admin_bot.service.reload_models()
    assert admin_bot.service.versions["cldnn"] == "mood-4q-cldnn-5"

    interaction = _slash(admin_bot, "rollback")
    await invoke(admin_bot.tree, interaction)

    reply = _only_reply(interaction)
    assert reply.ephemeral
    assert reply.content == (f"↩️ Rolled back: set **{BASE_SET}** is live, serving "
                             "`mood-4q-cldnn-test`, `mood-4q-ensemble-test`.")
    assert admin_bot.service.versions["cldnn"] == "mood-4q-cldnn-test"


async def test_prune_deletes_the_moods_of_older_models(admin_bot: MoodBot) -> None:
    service = admin_bot.service
    before = await service.stored_model_sets()
    # The library was classified by other models than the ones the fixture serves.
    assert [count for key, count in before if key != service.models_key] == [8]
    interaction = _slash(admin_bot, "prune")
    await invoke(admin_bot.tree, interaction)
    reply = _only_reply(interaction)
    assert reply.ephemeral and reply.content is not None
    assert reply.content.startswith("🧹 Deleted 8 stored moods of 1 older model set;")
    assert await service.stored_model_sets() == []
    again = _slash(admin_bot, "prune")
    await invoke(admin_bot.tree, again)
    assert _text(again) == "Nothing to prune: every stored mood is the live models'."


async def test_status_shows_the_live_models_their_figures_and_jobs(admin_bot: MoodBot,
                                                                   base: Path) -> None:
    admin = _admin(admin_bot)
    admin.command = tuple(_fake(base.parent / "fake_train.py", base, "crash"))
    await admin.retrain(requested_by="discord:1")

    interaction = _slash(admin_bot, "status", user_id=MANAGER)  # not the owner: fine
    await invoke(admin_bot.tree, interaction)

    reply = _only_reply(interaction)
    assert reply.ephemeral
    fields = {f.name: f.value or "" for f in reply.embed.fields}
    assert reply.embed.description == f"Live set **{BASE_SET}**"
    assert fields["Serving"] == "`mood-4q-cldnn-test`, `mood-4q-ensemble-test`"
    assert "`mood-4q-cldnn-test` cldnn, weight 0.50" in fields["Models of the live set"]
    assert fields["Validation (out-of-fold, artist-disjoint folds)"] == \
        "macro-F1 0.500 · accuracy 0.500 · valence 0.600 · arousal 0.700"
    assert fields["Rollback goes to"] == "nothing earlier"
    assert "**crashed**" in fields["Recent retrains"]
    assert "ValueError: no clips in fold 3" in fields["Recent retrains"]
    assert "Traceback" not in reply.text


async def test_reload_serves_the_live_set_from_disk(admin_bot: MoodBot, base: Path) -> None:
    install_set(_admin(admin_bot).home, base, "v6", "6")
    interaction = _slash(admin_bot, "reload")
    await invoke(admin_bot.tree, interaction)
    reply = _only_reply(interaction)
    assert reply.ephemeral
    assert reply.content == "🔄 Reloaded: serving `mood-4q-cldnn-6`, `mood-4q-ensemble-6`."
    assert admin_bot.service.versions["ensemble"] == "mood-4q-ensemble-6"


async def test_a_refusal_is_one_line_and_a_bug_is_logged(
        admin_bot: MoodBot, base: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    folder = install_set(_admin(admin_bot).home, base, "v6", "6")
    (folder / "mood-4q-cldnn-test.onnx").write_bytes(b"tampered")
    interaction = _slash(admin_bot, "reload")
    await invoke(admin_bot.tree, interaction)
    assert _only_reply(interaction).ephemeral
    text = _text(interaction)
    assert text.startswith("models: ") and "does not match its card" in text
    assert "\n" not in text
    assert admin_bot.service.versions["cldnn"] == "mood-4q-cldnn-test"  # still served

    async def broken(**_: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(_admin(admin_bot), "status", broken)
    caplog.set_level(logging.ERROR)
    interaction = _slash(admin_bot, "status")
    await invoke(admin_bot.tree, interaction)
    reply = _only_reply(interaction)
    assert (reply.content, reply.ephemeral) == (GENERIC, True)
    assert "RuntimeError: a bug" in caplog.text and "Traceback" not in reply.text


# --- settings ----------------------------------------------------------------------------------


async def test_settings_round_trip(admin_bot: MoodBot) -> None:
    shown = _slash(admin_bot, "settings")
    await invoke(admin_bot.tree, shown)
    embed = _only_reply(shown).embed
    assert embed.title == "This server's settings"
    assert [(f.name, f.value) for f in embed.fields] == [
        ("Suggestion channel", "off"), ("Auto-suggest", "off"), ("Auto-DJ", "off"),
        ("Companion channel", "off")]

    changed = _slash(admin_bot, "settings", channels={"suggest_channel": SUGGEST,
                                                      "companion_channel": COMPANION},
                     auto_dj=True)
    await invoke(admin_bot.tree, changed)
    reply = _only_reply(changed)
    assert reply.ephemeral and reply.embed.title == "Settings saved"
    assert {f.name: f.value for f in reply.embed.fields} == {
        "Suggestion channel": f"<#{SUGGEST}>", "Auto-suggest": "off", "Auto-DJ": "on",
        "Companion channel": f"<#{COMPANION}>"}
    admin_bot._guilds = None  # read back from the database, not the cache
    assert await admin_bot.guild_settings.get(GUILD_ID) == GuildConfig(
        suggest_channel_id=SUGGEST, auto_dj=True, companion_channel_id=COMPANION)

    off = _slash(admin_bot, "settings", turn_off="suggest_channel", auto_suggest=True)
    await invoke(admin_bot.tree, off)
    assert await admin_bot.guild_settings.get(GUILD_ID) == GuildConfig(
        auto_suggest=True, auto_dj=True, companion_channel_id=COMPANION)

    both = _slash(admin_bot, "settings", channels={"suggest_channel": SUGGEST},
                  turn_off="suggest_channel")
    await invoke(admin_bot.tree, both)
    assert _only_reply(both).content == \
        "Give the suggestion channel or turn it off, not both."


async def test_without_a_model_admin_the_model_commands_say_so(admin_bot: MoodBot) -> None:
    admin_bot.service.models_admin = None
    interaction = _slash(admin_bot, "status")
    await invoke(admin_bot.tree, interaction)
    assert _only_reply(interaction).content == \
        "The models cannot be managed from Discord in this setup."
    with pytest.raises(ServiceError):
        await admin_bot.service.rollback_models()


async def test_pinned_models_are_refused_before_anything_runs(admin_bot: MoodBot) -> None:
    _admin(admin_bot).pinned = True  # MER_MODELS_DIR is set
    for sub in ("retrain", "rollback"):
        interaction = _slash(admin_bot, sub)
        await invoke(admin_bot.tree, interaction)
        assert _only_reply(interaction).ephemeral
        assert "pinned by MER_MODELS_DIR" in _text(interaction)
    assert _cog(admin_bot).retrain_task is None


# --- feedback export -----------------------------------------------------------------------------


async def test_feedback_export_attaches_the_answers_as_csv(admin_bot: MoodBot) -> None:
    import csv
    import io

    for user, mood in (("21", "calm"), ("22", "calm"), ("23", "sad")):
        await admin_bot.tracks.feedback(7, mood, frontend="discord", user_id=user,
                                        context=str(GUILD_ID))
    interaction = _slash(admin_bot, "feedback-export", period="week")
    await invoke(admin_bot.tree, interaction)
    defer, reply = interaction.sent
    assert defer.kind == "defer" and defer.ephemeral
    assert reply.ephemeral and reply.content is not None and reply.content.startswith("1 track")
    (file,) = reply.files
    assert file.filename is not None and file.filename.startswith("mood-feedback-")
    rows = list(csv.DictReader(io.StringIO(file.fp.read().decode("utf-8"))))
    assert [(r["title"], r["quadrant"], r["votes_q4"], r["votes_q3"]) for r in rows] == [
        ("Still Water", "Q4", "2", "1")]
    assert "21" not in {r.get("user_id") for r in rows}  # no user ids, only counts


async def test_feedback_export_is_for_the_owner_only(admin_bot: MoodBot) -> None:
    interaction = _slash(admin_bot, "feedback-export", user_id=MANAGER)
    await invoke(admin_bot.tree, interaction)
    assert _only_reply(interaction).content == OWNER_ONLY
