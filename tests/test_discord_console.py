"""Console mode: the bot's commands typed as text, through the same tree, service and database.

Lines are read against the published commands (:mod:`bot.discord.console.parse`), run as real
interactions (:mod:`bot.discord.console.interaction`), and answered as text with files saved
(:mod:`bot.discord.console.text`, :mod:`bot.discord.console.session`). The service is real,
on a SQLite copy of the eight-track library of :mod:`tests.fakes.moodlib`.
"""

from __future__ import annotations

import asyncio
import builtins
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands
from rich.console import Console
from sqlalchemy import func, select

from bot.discord.bot import MoodBot, offline_payloads
from bot.discord.console.interaction import (
    CONSOLE_GUILD_ID,
    CONSOLE_USER_ID,
    ConsoleInteraction,
    invoke,
    log_in,
)
from bot.discord.console.parse import ParseError, parse
from bot.discord.console.reader import LineReader
from bot.discord.console.session import ConsoleSession, open_console, pick_choice
from bot.discord.console.text import Answer, Card, PlainOutput, RichOutput, plain_lines, spans
from bot.discord.errors import GENERIC
from bot.service import MoodService
from bot.storage.models import Feedback, TrackEvent
from tests.fakes import moodlib
from tests.fakes.moodlib import open_service

PNG = b"\x89PNG\r\n\x1a\n"
TRACK_BUTTONS = "[1] ✅ Right  [2] ❌ Wrong  [3] 🔎 Similar  [4] ➕ Add to queue"
JOURNEY_USAGE = ("usage: /mood journey <from:happy|tense|sad|calm> <to:happy|tense|sad|calm> "
                 "[steps:integer]")


@pytest.fixture
async def payloads() -> list[dict[str, Any]]:
    """The commands as ``sync`` publishes them (what the console reads lines against)."""
    return await offline_payloads()


def _answers(transcript: str) -> list[tuple[str, list[str]]]:
    """A scripted transcript as (command, its answer's lines), in order."""
    blocks: list[tuple[str, list[str]]] = []
    for line in transcript.splitlines():
        if line.startswith("> "):
            blocks.append((line[2:], []))
        elif line and blocks:
            blocks[-1][1].append(line)
    return blocks


async def _script(service: MoodService, folder: Path, script: str, *,
                  interactive: bool = False) -> tuple[int, str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = io.StringIO()
    status = await open_console(service, folder, stdin=io.StringIO(script),
                                output=PlainOutput(out), interactive=interactive)
    return status, out.getvalue()


async def test_lines_come_from_a_stream_until_its_end_or_its_failure() -> None:
    reader = LineReader(io.StringIO("/mood now\r\n\npress 1"))
    assert [await reader.read() for _ in range(4)] == ["/mood now", "", "press 1", None]

    class Broken(io.StringIO):
        def readline(self, size: int | None = -1) -> str:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    with pytest.raises(UnicodeDecodeError):
        await LineReader(Broken()).read()


def _path(line: str, label: str) -> Path:
    assert line.startswith(f"{label}: "), line
    return Path(line.removeprefix(f"{label}: "))


# --- reading a line -----------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "path", "values"), [
    ("/mood track calm", "mood track", {"query": "calm"}),
    ("mood track Artist - Title", "mood track", {"query": "Artist - Title"}),
    ("/MOOD Track   query:Artist - Title ", "mood track", {"query": "Artist - Title"}),
    ('/mood track query:"Intro: Part 1"', "mood track", {"query": "Intro: Part 1"}),
    ("/mood journey from:sad to:happy steps:5", "mood journey",
     {"from": "sad", "to": "happy", "steps": 5}),
    ("/mood journey Sad to:HAPPY", "mood journey", {"from": "sad", "to": "happy"}),
    ("/mood recommend mood:calm n:3", "mood recommend", {"mood": "calm", "n": 3}),
    ("/mood recommend calm", "mood recommend", {"mood": "calm"}),
    ("/mood recommend like:Sirens - Red Alert n:2", "mood recommend",
     {"like": "Sirens - Red Alert", "n": 2}),
    ("/mood stats period:Week", "mood stats", {"period": "week"}),
    ("/mood now", "mood now", {}),
])
def test_a_line_reads_as_a_command_with_typed_options(
        payloads: list[dict[str, Any]], line: str, path: str, values: dict[str, Any]) -> None:
    command = parse(payloads, line)
    assert command.path == path
    assert command.values == values
    types = {o["name"]: o["type"] for o in command.payload_options()}
    assert all(types[name] == (4 if name in ("steps", "n") else 3) for name in values)


@pytest.mark.parametrize(("line", "message", "usage_of"), [
    ("/nope", "unknown command /nope (`help` lists the commands)", None),
    ("/mood", "/mood is a group: name one of its commands (track, now, recommend, journey, "
              "stats)", "mood"),
    ("/mood dance", "/mood is a group: name one of its commands (track, now, recommend, "
                    "journey, stats)", "mood"),
    ("/mood track", "/mood track needs query", "mood track"),
    ("/mood journey to:happy", "/mood journey needs from", "mood journey"),
    ("/mood journey from:sad to:angry", "to: 'angry' is not one of happy, tense, sad, calm",
     "mood journey"),
    ("/mood journey from:sad to:happy steps:lots", "steps: 'lots' is not a whole number",
     "mood journey"),
    ("/mood journey from:sad to:happy steps:2.5", "steps: '2.5' is not a whole number",
     "mood journey"),
    ("/mood journey from:sad to:happy steps:1", "steps: 1 is less than 2", "mood journey"),
    ("/mood journey from:sad to:happy steps:100", "steps: 100 is more than 25",
     "mood journey"),
    ("/mood recommend n:3 n:4", "n is given twice", "mood recommend"),
    ("/mood recommend mood: n:3", "mood: give a value after the colon", "mood recommend"),
    ("/mood now please", "/mood now takes no options (got 'please')", "mood now"),
    ("/mood track " + "x" * 201, "query: at most 200 characters (got 201)", "mood track"),
    ("/mood stats week month", "period: 'week month' is not one of day, week, month, all",
     "mood stats"),
])
def test_a_bad_line_is_one_clear_error(payloads: list[dict[str, Any]], line: str,
                                       message: str, usage_of: str | None) -> None:
    with pytest.raises(ParseError) as caught:
        parse(payloads, line)
    assert str(caught.value) == message
    assert caught.value.path == usage_of


class Dice(commands.GroupCog, group_name="dice", group_description="Dice, for the tests"):
    """A group with a subgroup and options of every type the console can give."""

    roll = app_commands.Group(name="roll", description="Roll something")

    def __init__(self) -> None:
        super().__init__()
        self.later: asyncio.Task[Any] | None = None

    @app_commands.command(name="slow")
    async def slow(self, interaction: discord.Interaction[Any]) -> None:
        """Answer, then edit the answer later (as a retrain shows its progress)."""
        await interaction.response.defer(thinking=True)
        message = await interaction.followup.send("rolling…", wait=True)
        self.later = asyncio.create_task(message.edit(content="rolled a **6**"))

    @roll.command(name="die")
    @app_commands.describe(sides="Sides", loud="Shout it", weight="Loaded by",
                           where="A channel")
    async def die(self, interaction: discord.Interaction[Any],
                  sides: app_commands.Range[int, 2, 100], loud: bool = False,
                  weight: app_commands.Range[float, 0.0, 1.0] = 0.0,
                  where: discord.TextChannel | None = None) -> None:
        """Roll a die."""
        await interaction.response.send_message(
            f"d{sides} loud={loud} weight={weight} by <@{interaction.user.id}> in "
            f"{interaction.guild_id}", ephemeral=not loud)


async def test_any_group_of_the_tree_runs_with_converted_options(
        service: MoodService, tmp_path: Path) -> None:
    async with MoodBot(service, extensions=()) as bot:
        log_in(bot)
        await bot.add_cog(Dice())
        out = io.StringIO()
        session = ConsoleSession(bot, PlainOutput(out), tmp_path)
        for line in ("/dice roll die 6 loud:yes weight:0.5", "dice roll die sides:20",
                     "/dice roll die 6 loud:maybe", "/dice roll die 6 weight:2",
                     "/dice roll die 6 where:#music", "/dice roll", "/dice roll die"):
            assert await session.execute(line, echo=True)
    answers = dict(_answers(out.getvalue()))
    assert answers["/dice roll die 6 loud:yes weight:0.5"] == [f"d6 loud=True weight=0.5 by "
                                                              f"@you in {CONSOLE_GUILD_ID}"]
    assert answers["dice roll die sides:20"] == ["(only you) d20 loud=False weight=0.0 by @you "
                                                 f"in {CONSOLE_GUILD_ID}"]
    usage = "usage: /dice roll die <sides:integer> [loud:true/false] [weight:number] " \
            "[where:channel]"
    assert answers["/dice roll die 6 loud:maybe"] == ["error: loud: 'maybe' is not true or "
                                                      "false", usage]
    assert answers["/dice roll die 6 weight:2"] == ["error: weight: 2.0 is more than 1.0", usage]
    assert answers["/dice roll die 6 where:#music"][0] == \
        "error: where takes a channel, which the console cannot give"
    assert answers["/dice roll"] == ["error: /dice roll is a group: name one of its commands "
                                     "(die)", usage]
    assert answers["/dice roll die"] == ["error: /dice roll die needs sides", usage]
    assert session.failures == 5


async def test_an_edit_made_after_the_answer_is_shown_when_made(service: MoodService,
                                                                tmp_path: Path) -> None:
    async with MoodBot(service, extensions=()) as bot:
        log_in(bot)
        dice = Dice()
        await bot.add_cog(dice)
        out = io.StringIO()
        session = ConsoleSession(bot, PlainOutput(out), tmp_path)
        await session.execute("/dice slow")
        assert out.getvalue().splitlines() == ["rolling…", ""]
        assert dice.later is not None
        await dice.later
    assert out.getvalue().splitlines() == ["rolling…", "", "(edited) rolled a 6"]


def test_a_typed_text_names_a_suggestion_only_when_one_fits() -> None:
    choices = [app_commands.Choice(name="Calm Lake - Still Water", value="track:7"),
               app_commands.Choice(name="Thunder - Storm Warning", value="track:3")]
    assert pick_choice(choices, "still water") == choices[0]
    assert pick_choice(choices, "thunder - storm warning") == choices[1]
    assert pick_choice(choices, "track:3") == choices[1]
    assert pick_choice(choices, "a") is None  # in both: sent as typed
    assert pick_choice(choices, "Nobody") is None
    assert pick_choice([], "x") is None


# --- answers as text ----------------------------------------------------------------------------


def test_markdown_and_mentions_become_plain_text() -> None:
    text = "Now: **Joy \\*Band\\*** for <@3>, <@!42> in <#9> · `1.` *soft*\n```\nbar █░\n```"
    assert "".join(t for t, _ in spans(text)) == \
        "Now: Joy *Band* for @you, @user42 in #channel9 · 1. soft\nbar █░"
    assert ("Joy ", "bold") in spans(text) and ("1.", "code") in spans(text)
    assert CONSOLE_USER_ID == 3


def test_an_answer_as_plain_lines() -> None:
    card = Card(title="Journey: **sad** → happy", description="`1.` one\n`2.` two",
                fields=[("Bars", "```\na ██\nb █\n```"), ("Valence", "0.17 · negative")],
                footer="found 2 of 3", image="/out/004-mood.png")
    answer = Answer("followup", private=True, content="Here:", cards=[card],
                    files=["/out/004-moods.m3u8"], items=["✅ Right", "➕ Queue all (greyed out)"])
    assert plain_lines(answer) == [
        "(only you) Here:", "== Journey: sad → happy ==", "1. one", "2. two", "Bars:",
        "  a ██", "  b █", "Valence: 0.17 · negative", "chart: /out/004-mood.png",
        "-- found 2 of 3", "file: /out/004-moods.m3u8",
        "[1] ✅ Right  [2] ➕ Queue all (greyed out)"]
    assert plain_lines(Answer("edit", content="Done.")) == ["(edited) Done."]


def test_a_terminal_gets_panels_in_the_embeds_colour() -> None:
    screen = io.StringIO()
    output = RichOutput(Console(file=screen, force_terminal=True, width=60,
                                color_system="truecolor"))
    output.answer(Answer("followup", cards=[Card(title="Calm Lake - Still Water",
                                                 description="😌 **calm**",
                                                 image="/out/001-mood.png", colour=0x2A9D8F)],
                         items=["✅ Right"]))
    drawn = screen.getvalue()
    plain_text = re.sub(r"\x1b\[[0-9;]*m", "", drawn)
    assert "╭─ Calm Lake - Still Water" in plain_text and "chart: /out/001-mood.png" in plain_text
    assert "[1] ✅ Right" in plain_text
    assert "\x1b[38;2;42;157;143m" in drawn  # the border in the embed's colour


# --- a whole session ----------------------------------------------------------------------------

SESSION = """\
# The console reads a script like this one: comments and blank lines are skipped.

/mood track Still Water
press 2
press 1 sad
/mood recommend mood:calm n:3
/mood journey from:sad to:happy steps:3
press 2
/nope
/mood journey from:sad to:happy steps:100
/mood track st
"""


async def test_a_scripted_session_answers_every_command(service: MoodService,
                                                        tmp_path: Path) -> None:
    status, transcript = await _script(service, tmp_path / "out", SESSION)
    answers = _answers(transcript)
    assert [command for command, _ in answers] == [
        line for line in SESSION.splitlines() if line and not line.startswith("#")]
    (_, track), (_, wrong), (_, chosen), (_, picks), (_, journey), (_, export), \
        (_, unknown), (_, bad), (_, vague) = answers

    # /mood track: the stored title is completed as a user picks the suggestion
    assert track[:4] == ["(query: Calm Lake - Still Water)", "== Calm Lake - Still Water ==",
                         "😌 calm · 70% sure", "Mood probabilities:"]
    assert "Valence: 0.80 · positive" in track and track[-1] == TRACK_BUTTONS
    chart = _path(next(line for line in track if line.startswith("chart: ")), "chart")
    assert chart == tmp_path / "out" / "001-mood.png" and chart.read_bytes()[:8] == PNG

    # Wrong, then a mood in its select: stored as the console user's answer in its guild
    assert wrong == ["(only you) How does Still Water feel to you?",
                     "[1] Pick the mood you hear: happy|tense|sad|calm"]
    assert chosen == ["(edited) Thanks! Noted: 😢 sad."]
    async with service.store.sessions() as session:
        rows = (await session.scalars(select(Feedback))).all()
        scopes = (await session.execute(select(TrackEvent.scope, func.count())
                                        .group_by(TrackEvent.scope))).all()
    assert [(r.frontend, r.user_id, r.context, r.track_id, r.quadrant) for r in rows] == [
        ("discord", str(CONSOLE_USER_ID), str(CONSOLE_GUILD_ID), 7, "Q3")]

    assert picks[0] == "== 😌 calm picks =="
    assert [line.split(" · ")[0].strip() for line in picks[1:3]] == [
        "1. 😌 Calm Lake - Still Water", "2. 😌 The Brights - Slow Morning"]
    assert picks[-1] == "[1] ➕ Queue all  [2] 📄 Export M3U8"

    assert journey[0] == "== Journey: 😢 sad → 😄 happy =="
    steps = journey[1:4]
    assert [s.split(".")[0].strip() for s in steps] == ["1", "2", "3"]
    assert "😢" in steps[0] and "😄" in steps[-1]
    chart = _path(journey[4], "chart")
    assert chart.name == "005-mood.png" and chart.read_bytes()[:8] == PNG
    assert dict(scopes) == {f"discord:{CONSOLE_GUILD_ID}": 5}  # 2 picks + 3 steps remembered

    # Export M3U8 under the journey: a playlist file, to the console user only
    assert export[0] == "(only you) 3 tracks as a playlist:"
    playlist = _path(export[1], "file")
    assert playlist.name == "006-moods.m3u8"
    text = playlist.read_text(encoding="utf-8")
    assert text.startswith("#EXTM3U") and "Rainy Window" in text and "Sunny Day" in text

    assert unknown == ["error: unknown command /nope (`help` lists the commands)"]
    assert bad == ["error: steps: 100 is more than 25", JOURNEY_USAGE]
    assert vague == ["(query: sent as typed; it fits Calm Lake - Still Water (track:7), "
                     "Thunder - Storm Warning (track:3), Sad Songs - Lost Letters (track:6))",
                     "(only you) no track matches 'st'"]  # searched as typed, offline here
    assert status == 1  # three lines failed: a script can be a CI check
    assert "Traceback" not in transcript


async def test_a_clean_script_exits_0_without_cooldowns_and_stops_at_quit(
        service: MoodService, tmp_path: Path) -> None:
    script = "help\n" + "/mood track track:1\n" * 3 + "quit\n/mood track track:2\n"
    status, transcript = await _script(service, tmp_path / "out", script)
    answers = _answers(transcript)
    assert [command for command, _ in answers] == ["help", *["/mood track track:1"] * 3, "quit"]
    help_lines = answers[0][1]
    assert "/mood journey <from:happy|tense|sad|calm> <to:happy|tense|sad|calm> " \
           "[steps:integer]  A playlist that walks from one mood to another, one step per " \
           "track." in help_lines
    assert help_lines[-3].startswith("press <n> [value]")
    for _, answer in answers[1:4]:  # the console user is alone: no "Easy there"
        assert answer[0] == "== The Brights - Sunny Day ==" and answer[-1] == TRACK_BUTTONS
    assert "Slow Morning" not in transcript  # nothing after quit
    assert status == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "001-mood.png", "002-mood.png", "003-mood.png"]


async def test_a_bug_is_one_line_and_logged(bot: MoodBot, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    async def broken(query: str) -> Any:
        raise KeyError("internal detail at /srv/secret/path")

    monkeypatch.setattr(bot.tracks, "resolve", broken)
    out = io.StringIO()
    session = ConsoleSession(bot, PlainOutput(out), tmp_path)
    await session.execute("/mood track track:1")
    await session.execute("press 1")
    assert out.getvalue().splitlines() == [
        f"(only you) {GENERIC}", "",
        "error: no buttons to press: run a command first", ""]
    assert session.failures == 2
    assert any(r.exc_info is not None for r in caplog.records)  # the log has the traceback


async def test_scripted_and_interactive_sessions_answer_alike(
        library_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = ["/mood track Still Water", "press 1", "/mood recommend calm n:2",
              "/mood journey from:sad to:happy steps:3", "press 2", "/mood journey sad",
              "help mood stats"]
    runs: dict[str, str] = {}
    for mode in ("scripted", "interactive"):
        folder = tmp_path / mode
        folder.mkdir()
        prompts: list[str] = []
        typed = iter(script)

        def fake_input(prompt: str = "", typed: Any = typed, prompts: list[str] = prompts
                       ) -> str:
            prompts.append(prompt)
            try:
                return next(typed)
            except StopIteration:
                raise EOFError from None

        monkeypatch.setattr(builtins, "input", fake_input)
        async with open_service(library_db, folder) as service:
            status, transcript = await _script(service, folder / "out", "\n".join(script),
                                               interactive=mode == "interactive")
        if mode == "interactive":
            assert prompts == ["mood> "] * (len(script) + 1) and status == 0
            transcript = transcript.split("\n\n", 1)[1]  # after the greeting
        else:
            assert prompts == [] and status == 1  # `/mood journey sad` needs `to`
        lines = [line for line in transcript.splitlines() if not line.startswith("> ")]
        runs[mode] = "\n".join(lines).replace(str(folder), "<folder>")
    assert runs["scripted"] == runs["interactive"]
    assert "<folder>/out/004-mood.png" in runs["scripted"]
    assert "error: /mood journey needs to" in runs["scripted"]


def test_mer_console_runs_a_script_from_stdin(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The real thing: ``mer console`` starts ``python -m bot.discord console`` on the
    settings' database (the shipped models; the library stored under their versions and
    fusion weights)."""
    from mer_models.card import ModelCard
    from mer_models.engine import DEFAULT_MODELS_DIR, LOADERS, find_cards

    found = find_cards(DEFAULT_MODELS_DIR)  # the engine loads the newest of each kind
    cards = {kind: ModelCard.load(found[kind]) for kind in LOADERS if kind in found}
    monkeypatch.setattr(moodlib, "VERSIONS", {k: c.display_name for k, c in cards.items()})
    monkeypatch.setattr(moodlib, "WEIGHTS", {k: c.fusion_weight for k, c in cards.items()})
    data = tmp_path / "data"
    data.mkdir()
    moodlib.build_library(data / "mood.db")
    script = ("/mood recommend mood:calm n:2\n"
              "/mood journey from:sad to:happy steps:3\n"
              "/mood dance\n")
    env = {**{k: v for k, v in os.environ.items() if k != "MER_MODELS_DIR"},
           "MER_DATA_DIR": str(data), "MER_WORKERS": "1", "MER_DISCORD_TOKEN": ""}
    mer = shutil.which("mer", path=str(Path(sys.executable).parent))
    assert mer is not None
    done = subprocess.run([mer, "console"], input=script, cwd=tmp_path, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=180)
    assert done.returncode == 1, done.stderr  # the last line is not a command
    answers = dict(_answers(done.stdout))
    assert answers["/mood recommend mood:calm n:2"][0] == "== 😌 calm picks =="
    assert "Calm Lake - Still Water" in answers["/mood recommend mood:calm n:2"][1]
    journey = answers["/mood journey from:sad to:happy steps:3"]
    assert journey[0] == "== Journey: 😢 sad → 😄 happy =="
    chart = _path(journey[4], "chart")
    assert chart == data / "console" / "002-mood.png" and chart.read_bytes()[:8] == PNG
    assert answers["/mood dance"][0].startswith("error: /mood is a group")
    assert "Traceback" not in done.stdout + done.stderr
    assert (data / "console" / "console.log").exists()


async def test_a_console_interaction_is_a_real_one_from_the_console_user(bot: MoodBot) -> None:
    interaction = ConsoleInteraction(bot, discord.InteractionType.application_command,
                                     {"type": 1, "name": "mood", "id": "1", "options": [
                                         {"type": 1, "name": "now", "options": []}]},
                                     permissions=discord.Permissions.all())
    assert (interaction.user.id, interaction.guild_id) == (CONSOLE_USER_ID, CONSOLE_GUILD_ID)
    assert interaction.permissions.administrator and interaction.permissions.manage_guild
    assert abs((discord.utils.utcnow() - interaction.created_at).total_seconds()) < 60
    await invoke(bot.tree, interaction)
    assert interaction.command is not None and interaction.command.qualified_name == "mood now"
    assert [s.kind for s in interaction.sent] == ["message"]


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("MER_DATA_DIR", "{blocked}", "error: cannot create {blocked}/console: "),
    ("MER_N_WINDOWS", "zero", "error: invalid settings: MER_N_WINDOWS"),
])
def test_the_console_that_cannot_start_says_why_in_one_line(
        tmp_path: Path, variable: str, value: str, expected: str) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the data folder should be")
    env = {**os.environ, "MER_DATA_DIR": str(tmp_path / "data"),
           variable: value.format(blocked=blocked)}
    done = subprocess.run([sys.executable, "-m", "bot.discord", "console"], input="help\n",
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(expected.format(blocked=blocked)), done.stderr
    assert done.stderr.count("\n") == 1
