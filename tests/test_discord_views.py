"""The buttons under the mood answers: Right, Wrong (and its select), Similar, Add to queue,
Queue all, Export M3U8; and ``/mood now`` once a queue cog is loaded.

Each button's callback gets a real component interaction whose replies are recorded; answers
are read back from the feedback table of a real service on a SQLite copy of a small library.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from discord.ext import commands
from sqlalchemy import select

from bot.discord.bot import QUEUE_COG, MoodBot
from bot.discord.cogs.mood.views import NO_QUEUE, PicksView, TrackView, WrongMoodView
from bot.discord.errors import GENERIC
from bot.service import MoodService, ServiceError
from bot.storage.models import Feedback
from tests.fakes.interactions import GUILD_ID, FakeInteraction, click, invoke
from tests.fakes.moodlib import MUSIC


class FakeQueue(commands.Cog, name=QUEUE_COG):
    """A queue cog as the queue issue will write one: it records what is queued."""

    def __init__(self, playing: int | None = None) -> None:
        self.queued: list[tuple[int, int, list[int]]] = []
        self.playing = playing

    async def enqueue(self, guild_id: int, user_id: int, track_ids: Sequence[int]) -> str:
        self.queued.append((guild_id, user_id, list(track_ids)))
        return f"Queued {len(track_ids)} tracks."

    async def now_playing(self, guild_id: int) -> int | None:
        return self.playing


async def _feedback(service: MoodService) -> list[tuple[str, str, str | None, int, str]]:
    async with service.store.sessions() as session:
        rows = (await session.scalars(select(Feedback).order_by(Feedback.id))).all()
    return [(r.frontend, r.user_id, r.context, r.track_id, r.quadrant) for r in rows]


async def _track_view(bot: MoodBot, track_id: int) -> TrackView:
    return TrackView(bot, await bot.tracks.mood(track_id))


async def test_right_stores_the_users_agreement(bot: MoodBot, service: MoodService) -> None:
    view = await _track_view(bot, 3)  # Storm Warning: tense
    press = await click(view, view.right, user_id=11)
    (reply,) = press.sent
    assert reply.ephemeral and reply.content == "Thanks! Noted that it sounds 😬 tense to you."
    assert await _feedback(service) == [("discord", "11", str(GUILD_ID), 3, "Q2")]


async def test_wrong_then_a_mood_replaces_the_users_answer(bot: MoodBot,
                                                           service: MoodService) -> None:
    view = await _track_view(bot, 3)
    await click(view, view.right, user_id=11)

    press = await click(view, view.wrong, user_id=11)
    (question,) = press.sent
    assert question.ephemeral and "Storm Warning" in (question.content or "")
    select_view = question.view
    assert isinstance(select_view, WrongMoodView)
    assert [(o.label, o.value) for o in select_view.choice.options] == [
        ("happy", "Q1"), ("tense", "Q2"), ("sad", "Q3"), ("calm", "Q4")]

    pick = await click(select_view, select_view.choice, user_id=11, values=["Q3"])
    (closed,) = pick.sent
    assert closed.kind == "edit" and closed.content == "Thanks! Noted: 😢 sad."
    assert closed.view is None and select_view.is_finished()
    # One answer per user and track: the new one replaced the first.
    assert await _feedback(service) == [("discord", "11", str(GUILD_ID), 3, "Q3")]

    await click(view, view.right, user_id=12, guild_id=None)
    assert await _feedback(service) == [("discord", "11", str(GUILD_ID), 3, "Q3"),
                                        ("discord", "12", None, 3, "Q2")]


async def test_similar_defers_and_lists_tracks_like_this_one(bot: MoodBot) -> None:
    view = await _track_view(bot, 7)  # Still Water: calm
    press = await click(view, view.similar)
    first, reply = press.sent
    assert first.kind == "defer" and first.thinking
    assert reply.embed.title == "Like Still Water"
    lines = (reply.embed.description or "").splitlines()
    assert len(lines) == 5 and "Still Water" not in "".join(lines)
    assert "Slow Morning" in lines[0]  # the other calm track is the nearest
    assert isinstance(reply.view, PicksView)


async def test_queue_buttons_say_so_until_a_queue_exists(bot: MoodBot) -> None:
    await bot.remove_cog(QUEUE_COG)
    view = await _track_view(bot, 1)
    press = await click(view, view.add_to_queue)
    (reply,) = press.sent
    assert reply.ephemeral and reply.content == NO_QUEUE

    picks = await bot.service.recommendations.recommend("happy", 2)
    assert PicksView(bot, picks).queue_all.disabled


async def test_queue_buttons_and_now_use_the_queue_cog(bot: MoodBot) -> None:
    queue = FakeQueue(playing=5)
    await bot.remove_cog(QUEUE_COG)  # the real one: tests/test_discord_queue.py
    await bot.add_cog(queue)
    view = await _track_view(bot, 1)
    press = await click(view, view.add_to_queue, user_id=21)
    assert press.sent[0].content == "Queued 1 tracks."
    assert queue.queued == [(GUILD_ID, 21, [1])]

    picks = await bot.service.recommendations.recommend("sad", 2)
    picks_view = PicksView(bot, picks)
    assert not picks_view.queue_all.disabled
    await click(picks_view, picks_view.queue_all, user_id=22)
    assert queue.queued[-1] == (GUILD_ID, 22, [p.track.track_id for p in picks])

    dm = await click(view, view.add_to_queue, guild_id=None)
    assert dm.sent[0].content == "The queue works in servers only."

    now = FakeInteraction.slash(bot, "mood now")
    await invoke(bot.tree, now)
    assert [s.kind for s in now.sent] == ["defer", "followup"]
    assert now.sent[1].embed.title == "Grey Skies - Rainy Window"

    queue.playing = None
    idle = FakeInteraction.slash(bot, "mood now", user_id=23)
    await invoke(bot.tree, idle)
    assert idle.sent[0].content == "Nothing is playing."


async def test_export_sends_an_m3u8_without_this_machines_folders(bot: MoodBot) -> None:
    picks = await bot.service.recommendations.recommend("calm", 2)
    picks_view = PicksView(bot, picks)
    press = await click(picks_view, picks_view.export)
    (reply,) = press.sent
    assert reply.ephemeral
    (file,) = reply.files
    assert file.filename == "moods.m3u8"
    text = file.fp.read().decode("utf-8")
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    assert sorted(lines[2::2]) == ["Calm Lake/Still Water.mp3", "The Brights/Slow Morning.mp3"]
    assert str(MUSIC) not in text
    assert "#EXTINF:200,Calm Lake - Still Water" in lines


async def test_a_failing_button_answers_in_one_line(
        bot: MoodBot, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    view = await _track_view(bot, 1)

    async def refuses(*args: object, **kwargs: object) -> str:
        raise ServiceError("could not store the answer: database is locked")

    monkeypatch.setattr(bot.tracks, "feedback", refuses)
    press = await click(view, view.right)
    assert press.sent[0].content == "could not store the answer: database is locked"

    async def bug(*args: object, **kwargs: object) -> str:
        raise ZeroDivisionError("x")

    monkeypatch.setattr(bot.tracks, "feedback", bug)
    with caplog.at_level(logging.ERROR):
        press = await click(view, view.right)
    assert press.sent[0].content == GENERIC and press.sent[0].ephemeral
    assert any(r.exc_info and "TrackView Right" in r.getMessage() for r in caplog.records)


async def test_timed_out_buttons_are_greyed_out(bot: MoodBot) -> None:
    view = await _track_view(bot, 1)
    interaction = FakeInteraction.slash(bot, "mood track", query="track:1")
    await interaction.response.defer()
    view.message = await interaction.followup.send(view=view, wait=True)  # type: ignore
    await view.on_timeout()
    assert all(getattr(item, "disabled", False) for item in view.children)
    assert interaction.sent[-1].kind == "message edit"
