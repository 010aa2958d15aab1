"""The ``/mood`` commands driven through the command tree, as Discord would call them.

No gateway and no HTTP: :class:`tests.fakes.interactions.FakeInteraction` is a real
interaction built from Discord's payload whose replies are recorded. The service is real, on a
SQLite copy of a small stored library (:mod:`tests.fakes.moodlib`); only the models are not
loaded (nothing here classifies audio).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from bot.cli import app
from bot.discord.bot import QUEUE_COG, MoodBot, command_payloads, offline_payloads
from bot.discord.errors import GENERIC
from bot.service import MoodService
from bot.storage.models import TrackEvent
from mer_models.moods import MOOD_NAMES, QUADRANTS
from tests.fakes.discord_fixtures import (  # noqa: F401  (SQLite and PostgreSQL)
    service_on_both_backends,
)
from tests.fakes.interactions import GUILD_ID, FakeInteraction, Sent, invoke


def _payload(payloads: list[dict[str, Any]], name: str) -> dict[str, Any]:
    mood = next(p for p in payloads if p["name"] == "mood")
    return next(o for o in mood["options"] if o["name"] == name)


def _options(command: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in command["options"]}


def _replies(interaction: FakeInteraction) -> list[Sent]:
    return [s for s in interaction.sent if s.kind != "defer"]


# --- the command tree as it would be published -------------------------------------------------


async def test_the_tree_publishes_the_mood_group_with_typed_options() -> None:
    payloads = await offline_payloads()
    names = [p["name"] for p in payloads]
    assert names[:2] == ["mood", "queue"]  # the admin group follows (tests/test_discord_admin)
    mood = payloads[0]
    assert mood["default_member_permissions"] is None  # everyone may ask how a song feels
    assert [o["name"] for o in mood["options"]] == ["track", "now", "recommend", "journey",
                                                    "stats"]
    words = [MOOD_NAMES[q] for q in QUADRANTS]

    track = _options(_payload(payloads, "track"))
    assert track["query"]["required"] and track["query"]["autocomplete"]
    assert track["query"]["max_length"] == 200

    recommend = _options(_payload(payloads, "recommend"))
    assert [c["value"] for c in recommend["mood"]["choices"]] == words
    assert not recommend["mood"]["required"] and not recommend["like"]["required"]
    assert recommend["like"]["autocomplete"]
    assert (recommend["n"]["type"], recommend["n"]["min_value"], recommend["n"]["max_value"]) \
        == (4, 1, 25)

    journey = _options(_payload(payloads, "journey"))
    assert list(journey) == ["from", "to", "steps"]  # Python's start/end, renamed
    assert journey["from"]["required"] and journey["to"]["required"]
    assert [c["value"] for c in journey["to"]["choices"]] == words
    assert journey["steps"]["min_value"] == 2

    stats = _options(_payload(payloads, "stats"))
    assert [c["value"] for c in stats["period"]["choices"]] == ["day", "week", "month", "all"]
    for command in mood["options"]:
        assert 0 < len(command["description"]) <= 100
        assert all(0 < len(o["description"]) <= 100 for o in command["options"])


async def test_commands_json_prints_the_sync_payloads(bot: MoodBot) -> None:
    expected = command_payloads(bot.tree)
    env = {**os.environ, "MER_DISCORD_TOKEN": ""}
    result = CliRunner().invoke(app, ["bot", "commands", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == expected

    listing = CliRunner().invoke(app, ["bot", "commands"], env=env)
    assert listing.exit_code == 0
    assert "/mood journey <from:happy|tense|sad|calm> <to:happy|tense|sad|calm>" \
        in listing.stdout


def test_run_without_a_token_says_which_setting(tmp_path: Path) -> None:
    env = {**os.environ, "MER_DISCORD_TOKEN": ""}
    for command in (["run"], ["sync"]):
        done = subprocess.run([sys.executable, "-m", "bot.discord", *command], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1
        assert "MER_DISCORD_TOKEN" in done.stderr
        assert "Traceback" not in done.stderr


# --- /mood track --------------------------------------------------------------------------------


async def test_track_autocomplete_offers_stored_tracks_by_prefix(bot: MoodBot) -> None:
    interaction = FakeInteraction.typing(bot, "mood track", focused="query", value="st")
    await invoke(bot.tree, interaction)
    (sent,) = interaction.sent
    assert sent.kind == "autocomplete"
    # Names starting with "st" first (the newest first), then names containing it.
    assert [c.name for c in sent.choices] == ["Calm Lake - Still Water",
                                              "Thunder - Storm Warning",
                                              "Sad Songs - Lost Letters"]
    assert [c.value for c in sent.choices] == ["track:7", "track:3", "track:6"]


async def test_track_defers_then_answers_with_mood_chart_and_buttons(bot: MoodBot) -> None:
    interaction = FakeInteraction.slash(bot, "mood track", query="track:5")
    await invoke(bot.tree, interaction)
    first, reply = interaction.sent
    assert first.kind == "defer" and first.thinking
    assert reply.kind == "followup" and not reply.ephemeral
    embed = reply.embed
    assert embed.title == "Grey Skies - Rainy Window"
    assert "sad" in (embed.description or "") and "71% sure" in (embed.description or "")
    fields = {f.name: f.value for f in embed.fields}
    bars = fields["Mood probabilities"].strip("`\n").splitlines()
    assert [line.split()[1] for line in bars] == ["happy", "tense", "sad", "calm"]
    assert [line.split()[-1] for line in bars] == ["4%", "12%", "71%", "13%"]
    assert fields["Valence"].startswith("0.17") and "negative" in fields["Valence"]
    assert fields["Arousal"].startswith("0.16") and "low energy" in fields["Arousal"]
    (chart,) = reply.files
    assert chart.filename == "mood.png" and embed.image.url == "attachment://mood.png"
    assert chart.fp.read(8) == b"\x89PNG\r\n\x1a\n"
    assert type(reply.view).__name__ == "TrackView"  # reloaded with its extension
    assert [getattr(b, "label", None) for b in reply.view.children] == [
        "Right", "Wrong", "Similar", "Add to queue"]


async def test_an_unknown_song_is_a_short_message_not_a_traceback(bot: MoodBot) -> None:
    interaction = FakeInteraction.slash(bot, "mood track", query="Nobody - Nothing")
    await invoke(bot.tree, interaction)
    assert [s.kind for s in interaction.sent] == ["defer", "followup"]
    (reply,) = _replies(interaction)
    assert reply.content == "no track matches 'Nobody - Nothing'"
    assert reply.embeds == [] and reply.view is None


async def test_a_stored_reference_to_nothing_is_refused(bot: MoodBot) -> None:
    interaction = FakeInteraction.slash(bot, "mood track", query="track:999")
    await invoke(bot.tree, interaction)
    (reply,) = _replies(interaction)
    assert reply.content == "track 999 is not in the library"


async def test_a_bug_is_logged_with_its_traceback_and_hidden_from_the_user(
        bot: MoodBot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(query: str) -> Any:
        raise KeyError("internal detail at /srv/secret/path")

    monkeypatch.setattr(bot.tracks, "resolve", broken)
    interaction = FakeInteraction.slash(bot, "mood track", query="anything")
    with caplog.at_level(logging.ERROR, logger="bot.discord"):
        await invoke(bot.tree, interaction)
    (reply,) = _replies(interaction)  # answered once, by the tree's fallback
    assert reply.content == GENERIC and reply.ephemeral
    assert "secret" not in reply.text and "Traceback" not in reply.text
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "/mood track failed" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)


async def test_cooldown_is_per_user_and_friendly(bot: MoodBot) -> None:
    calls: list[str] = []
    resolve = bot.tracks.resolve

    async def counting(query: str) -> Any:
        calls.append(query)
        return await resolve(query)

    bot.tracks.resolve = counting  # type: ignore[method-assign]
    for _ in range(2):
        await invoke(bot.tree, FakeInteraction.slash(bot, "mood track", query="track:1"))
    refused = FakeInteraction.slash(bot, "mood track", query="track:1")
    await invoke(bot.tree, refused)
    (reply,) = refused.sent
    assert reply.kind == "message" and reply.ephemeral
    assert reply.content is not None and reply.content.startswith("Easy there")
    assert len(calls) == 2  # the third never reached the service

    other = FakeInteraction.slash(bot, "mood track", query="track:1", user_id=2)
    await invoke(bot.tree, other)
    assert [s.kind for s in other.sent] == ["defer", "followup"]
    assert len(calls) == 3


# --- /mood recommend and /mood journey ---------------------------------------------------------


async def test_recommend_needs_exactly_one_of_mood_and_like(bot: MoodBot) -> None:
    for options in ({}, {"mood": "calm", "like": "track:1"}):
        interaction = FakeInteraction.slash(bot, "mood recommend", **options)
        await invoke(bot.tree, interaction)
        (reply,) = interaction.sent
        assert reply.kind == "message" and reply.ephemeral  # refused before deferring
        assert reply.content == "Give either a mood or a song to be like (not both)."


async def test_recommend_a_mood_lists_picks_and_remembers_them_for_the_guild(
        bot: MoodBot, service: MoodService) -> None:
    interaction = FakeInteraction.slash(bot, "mood recommend", mood="calm", n=2)
    await invoke(bot.tree, interaction)
    first, reply = interaction.sent
    assert first.kind == "defer"
    assert reply.embed.title == "😌 calm picks"
    lines = (reply.embed.description or "").splitlines()
    assert len(lines) == 2
    assert all("😌" in line for line in lines)
    assert sorted(name for name in ("Still Water", "Slow Morning")
                  if name in "".join(lines)) == ["Slow Morning", "Still Water"]
    assert type(reply.view).__name__ == "PicksView"
    assert not reply.view.queue_all.disabled and not reply.view.export.disabled
    async with service.store.sessions() as session:
        remembered = await session.scalar(select(func.count()).select_from(TrackEvent).where(
            TrackEvent.scope == f"discord:{GUILD_ID}"))
    assert remembered == 2


async def test_recommend_like_a_stored_track_leaves_it_out(bot: MoodBot) -> None:
    interaction = FakeInteraction.slash(bot, "mood recommend", like="track:1", n=3)
    await invoke(bot.tree, interaction)
    reply = _replies(interaction)[0]
    assert reply.embed.title == "Like The Brights - Sunny Day"
    text = reply.embed.description or ""
    assert "Sunny Day" not in text and text.count("\n") == 2
    assert "Happy Hour" in text.splitlines()[0]  # the other happy track is the nearest


async def test_journey_walks_between_moods_with_a_chart(bot: MoodBot) -> None:
    interaction = FakeInteraction.slash(bot, "mood journey", **{"from": "sad", "to": "happy"},
                                          steps=3)
    await invoke(bot.tree, interaction)
    reply = _replies(interaction)[0]
    assert reply.embed.title == "Journey: 😢 sad → 😄 happy"
    lines = (reply.embed.description or "").splitlines()
    assert len(lines) == 3
    assert "😢" in lines[0] and "😄" in lines[-1]
    assert [f.filename for f in reply.files] == ["mood.png"]
    assert type(reply.view).__name__ == "PicksView"


# --- /mood stats and /mood now -----------------------------------------------------------------


async def test_stats_falls_back_to_the_library_then_shows_the_guild(bot: MoodBot) -> None:
    interaction = FakeInteraction.slash(bot, "mood stats", period="week")
    await invoke(bot.tree, interaction)
    reply = _replies(interaction)[0]
    assert reply.embed.title == ("Nothing played or suggested in this server in the last "
                                 "week: the whole library")
    rows = (reply.embed.description or "").strip("`\n").splitlines()
    assert [row.split()[-2] for row in rows] == ["2", "2", "2", "2"]
    assert reply.files[0].fp.read(4) == b"\x89PNG"

    await invoke(bot.tree, FakeInteraction.slash(bot, "mood recommend", mood="sad", n=2,
                                                   user_id=3))
    interaction = FakeInteraction.slash(bot, "mood stats", period="day", user_id=4)
    await invoke(bot.tree, interaction)
    reply = _replies(interaction)[0]
    assert reply.embed.title == "Moods heard in this server, last day"
    rows = (reply.embed.description or "").strip("`\n").splitlines()
    assert [row.split()[-2] for row in rows] == ["0", "0", "2", "0"]


async def test_now_says_nothing_plays_until_there_is_a_queue(bot: MoodBot) -> None:
    await bot.remove_cog(QUEUE_COG)
    interaction = FakeInteraction.slash(bot, "mood now")
    await invoke(bot.tree, interaction)
    (reply,) = interaction.sent
    assert reply.ephemeral and reply.content == \
        "Nothing is playing: the queue is not available yet."
