"""A console session: typed lines run through the bot's own command tree.

Each line becomes the interaction Discord would send for it (:mod:`.parse` reads it against
the published commands; options that autocomplete are completed the way a user picks a
suggestion), runs through ``CommandTree._call`` and the cogs' error handlers, and what the
bot answers is shown as text (:mod:`.text`), its files saved. ``press N`` presses a button of
the newest answer that has buttons still answering.

The console is one local user in one guild (:data:`~.interaction.CONSOLE_USER_ID`,
:data:`~.interaction.CONSOLE_GUILD_ID`) with every permission, and the bot's owner. Commands'
cooldowns, which share a bot fairly among a server's users, do not apply to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import discord
from discord import app_commands

from bot.discord.bot import MoodBot, command_payloads
from bot.discord.console.interaction import (
    CONSOLE_USER_ID,
    ConsoleInteraction,
    Sent,
    command_data,
    component_data,
    invoke,
    log_in,
    press,
)
from bot.discord.console.parse import STRING, CommandLine, ParseError, parse
from bot.discord.console.reader import LineReader
from bot.discord.console.text import Output, answer_of, buttons_line, file_names, item_label
from bot.discord.errors import ANSWERED, GENERIC
from bot.discord.main import describe

if TYPE_CHECKING:
    from bot.service import MoodService

logger = logging.getLogger(__name__)

#: The console user's permissions, and the bot's: everything (it is the local shell user).
EVERYTHING: Final = discord.Permissions.all()
PROMPT: Final = "mood> "
#: The console's own words (without a slash; with one, a line is always a slash command).
CONSOLE_HELP: Final = (
    "press <n> [value]  press button n of the last answer (a select: press 1 sad)",
    "help [command]  this list, or one command's usage",
    "quit  leave (also exit, or Ctrl-D)",
)
_VIEWS_KEPT = 20


class ConsoleSession:
    """One console: the bot, the buttons it showed last, where files go.

    Parameters
    ----------
    bot : MoodBot
        The bot, its extensions loaded (``setup_hook``) and logged in (``log_in``).
    output : Output
        Where answers are written.
    folder : Path
        Where attached files are saved (``007-mood.png``: the 7th command's chart).

    Attributes
    ----------
    failures : int
        Lines not run (not a command, a bad value) or answered with an error.
    """

    def __init__(self, bot: MoodBot, output: Output, folder: Path) -> None:
        self.bot = bot
        self.output = output
        self.folder = folder
        self.payloads = command_payloads(bot.tree)
        self.failures = 0
        self._number = 0
        self._views: list[discord.ui.View] = []

    async def run(self, reader: LineReader, *, echo: bool = False) -> None:
        """Run lines until the reader ends or a line says ``quit``."""
        while (line := await reader.read()) is not None:
            if not await self.execute(line, echo=echo):
                break

    async def execute(self, line: str, *, echo: bool = False) -> bool:
        """Run one line (blank lines and ``# comments`` are skipped); False: ``quit``.

        ``echo`` writes the line before its answer (a script's transcript).
        """
        text = line.strip()
        if not text or text.startswith("#"):
            return True
        if echo:
            self.output.command(text)
        word, _, rest = text.partition(" ")
        if word.lower() in ("quit", "exit"):
            return False
        try:
            if word.lower() == "help":
                self._help(rest)
            elif word.lower() == "press":
                await self._press(rest)
            else:
                await self._command(text)
        except ParseError as exc:
            self.failures += 1
            self.output.error(str(exc), self.usage(exc.path))
        except Exception:  # a bug here, not in a command (those are answered by the bot)
            logger.exception("the console failed on %r", text)
            self.failures += 1
            self.output.error(GENERIC)
        self.output.done()
        return True

    def usage(self, path: str | None) -> list[str]:
        """The synopsis of a command, or of every command of a group (none for None)."""
        return [line.split("  ")[0] for line in self._described(path)] if path else []

    def _described(self, path: str) -> list[str]:
        """The ``help`` lines of a command, or of every command of a group."""
        return [line for line in describe(self.payloads)
                if (line + " ").startswith(f"/{path} ")]

    # --- the three kinds of line -----------------------------------------------------------

    def _help(self, topic: str) -> None:
        topic = " ".join(topic.strip().removeprefix("/").lower().split())
        if not topic:
            self.output.lines([*describe(self.payloads), *CONSOLE_HELP])
            return
        chosen = self._described(topic)
        if not chosen:
            raise ParseError(f"unknown command /{topic} (`help` lists the commands)")
        self.output.lines(chosen)

    async def _command(self, text: str) -> None:
        command = await self._completed(parse(self.payloads, text))
        interaction = self._interaction(discord.InteractionType.application_command,
                                        command_data(command.path, command.payload_options()))
        await invoke(self.bot.tree, interaction)
        await self._show(interaction)

    async def _press(self, rest: str) -> None:
        words = rest.split()
        if not words or not words[0].isdigit():
            raise ParseError("press takes a button's number: press 1 (a select: press 1 sad)")
        view = next((v for v in reversed(self._views) if not v.is_finished()), None)
        if view is None:
            raise ParseError("no buttons to press: run a command first")
        number, items = int(words[0]), view.children
        if not 1 <= number <= len(items):
            labels = buttons_line([item_label(item) for item in items])
            raise ParseError(f"no button {number}; the last answer has {labels}")
        item = items[number - 1]
        if getattr(item, "disabled", False):
            raise ParseError(f"[{number}] {item_label(item)}: it does not answer")
        if getattr(item, "url", None):
            self.output.lines([f"[{number}] opens {getattr(item, 'url', '')}"])
            return
        values = (choose(item, " ".join(words[1:])) if isinstance(item, discord.ui.Select)
                  else None)
        if values is None and len(words) > 1:
            raise ParseError(f"[{number}] is a button: press {number} takes no value")
        interaction = self._interaction(discord.InteractionType.component,
                                        component_data(item, values))
        await press(view, item, interaction)
        await self._show(interaction)

    # --- helpers ---------------------------------------------------------------------------

    def _interaction(self, kind: discord.InteractionType,
                     data: dict[str, Any]) -> ConsoleInteraction:
        return ConsoleInteraction(self.bot, kind, data, permissions=EVERYTHING,
                                  app_permissions=EVERYTHING)

    async def _completed(self, command: CommandLine) -> CommandLine:
        """Options that autocomplete get the suggestion the text names, as a user picks it;
        the text is sent as typed when none or several fit (those are listed)."""
        values = dict(command.values)
        for name, typed in command.values.items():
            option = command.option(name)
            if not option.get("autocomplete") or option.get("type") != STRING:
                continue
            options = command.payload_options()
            for entry in options:
                entry["focused"] = entry["name"] == name
            asking = self._interaction(discord.InteractionType.autocomplete,
                                       command_data(command.path, options))
            await invoke(self.bot.tree, asking)
            choices = next((s.choices for s in asking.sent if s.kind == "autocomplete"), [])
            choice = pick_choice(choices, typed)
            if choice is not None:
                values[name] = choice.value
                if choice.name.casefold() != typed.casefold():
                    self.output.lines([f"({name}: {choice.name})"])
            elif choices:
                self.output.lines([f"({name}: sent as typed; it fits {_suggested(choices)})"])
        return CommandLine(command.path, command.command, values)

    async def _show(self, interaction: ConsoleInteraction) -> None:
        self._number += 1
        shown = [s for s in interaction.sent if s.kind not in ("defer", "autocomplete")]
        if not shown:
            self.output.lines(["(no answer: the bot did not respond)"])
            self.failures += 1
        for sent in shown:
            self.output.answer(answer_of(sent, await self._save(sent)))
            self._remember(sent)
        if interaction.extras.get(ANSWERED):
            self.failures += 1
        interaction.listener = self._edited_later

    def _edited_later(self, sent: Sent) -> None:
        """An edit made after the command answered (a retrain's progress): shown as made."""
        self.output.answer(answer_of(sent))
        self._remember(sent)

    def _remember(self, sent: Sent) -> None:
        if sent.view is not None:
            self._views = [*self._views[-_VIEWS_KEPT + 1:], sent.view]

    async def _save(self, sent: Sent) -> list[tuple[str, str]]:
        saved: list[tuple[str, str]] = []
        for file, path in zip(sent.files, file_names(sent.files, self._number, self.folder),
                              strict=True):
            file.reset()
            data = file.fp.read()
            try:
                await asyncio.to_thread(path.write_bytes, data)
            except OSError as exc:
                logger.warning("cannot save %s: %s", path, exc)
                saved.append((file.filename, f"(not saved: {exc.strerror or exc})"))
            else:
                saved.append((file.filename, str(path)))
        return saved


def _suggested(choices: Sequence[app_commands.Choice[Any]], shown: int = 5) -> str:
    """``a (track:1), b (track:2) and 3 more``."""
    names = ", ".join(f"{c.name} ({c.value})" for c in choices[:shown])
    return names + (f" and {len(choices) - shown} more" if len(choices) > shown else "")


def pick_choice(choices: Sequence[app_commands.Choice[Any]], typed: str
                ) -> app_commands.Choice[Any] | None:
    """The suggestion a typed text names: one whose name or value it is (any case), else
    the only one whose name contains it; None when none or several fit."""
    wanted = typed.casefold()
    for choice in choices:
        if wanted in (choice.name.casefold(), str(choice.value).casefold()):
            return choice
    containing = [c for c in choices if wanted in c.name.casefold()]
    return containing[0] if len(containing) == 1 else None


def choose(select: discord.ui.Select[Any], text: str) -> list[str]:
    """The values of a select's options named by ``text`` (labels or values, any case;
    several separated by spaces when the whole text names none).

    Raises
    ------
    ParseError
        A word names no option, or too few or too many are named.
    """
    def find(word: str) -> str:
        for option in select.options:
            if word.casefold() in (option.label.casefold(), option.value.casefold()):
                return option.value
        names = ", ".join(o.label for o in select.options)
        raise ParseError(f"{word!r} is not one of {names}")

    if not text.strip():
        names = ", ".join(o.label for o in select.options)
        raise ParseError(f"name your choice: press <n> <one of {names}>")
    try:
        values = [find(text.strip())]
    except ParseError:
        values = [find(word) for word in text.split()]
    if not select.min_values <= len(values) <= select.max_values:
        raise ParseError(f"choose {select.min_values} to {select.max_values}")
    return values


def without_cooldowns(tree: app_commands.CommandTree[Any]) -> int:
    """Remove the commands' cooldown checks (the console is one user); how many."""
    removed = 0
    for command in tree.walk_commands():
        if isinstance(command, app_commands.Command):
            kept = [c for c in command.checks if not _is_cooldown(c)]
            removed += len(command.checks) - len(kept)
            command.checks = kept
    return removed


def _is_cooldown(check: Any) -> bool:
    # discord.py's cooldown decorators all build their check in this one function.
    return str(getattr(check, "__qualname__", "")).startswith("_create_cooldown_decorator.")


async def open_console(service: MoodService, folder: Path, *, stdin: IO[str], output: Output,
                       interactive: bool) -> int:
    """Build the bot on ``service`` (no connection), then read commands until the end.

    Parameters
    ----------
    service : MoodService
        The service, created and closed by the caller.
    folder : Path
        Where files are saved (it exists).
    stdin : text stream
        Where commands come from.
    output : Output
        Where answers go.
    interactive : bool
        A prompt and no echo (a terminal), or the commands echoed before their answers.

    Returns
    -------
    int
        The exit status: 0, or 1 when a line of a script failed (a terminal session: 0).
    """
    async with MoodBot(service, owner_ids={CONSOLE_USER_ID}) as bot:
        log_in(bot)
        await bot.setup_hook()
        without_cooldowns(bot.tree)
        session = ConsoleSession(bot, output, folder)
        if interactive:
            output.lines([f"The bot's commands, as text; files go to {folder}.",
                          "`help` lists the commands, `quit` leaves.", ""])
        await session.run(LineReader(stdin, PROMPT if interactive else None),
                          echo=not interactive)
    await _settled()
    return 1 if session.failures and not interactive else 0


async def _settled(timeout: float = 5.0) -> None:
    """Let the tasks the cogs cancelled on unloading finish, before the service closes
    the database under them."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    if others:
        await asyncio.wait(others, timeout=timeout)
