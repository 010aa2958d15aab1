"""``python -m bot.discord run|sync|commands|console``: run the bot, publish or print its
commands, or type them in a console.

``mer bot ...`` runs this module in a child process, since front-ends never import each
other. The token is read from the settings (``MER_DISCORD_TOKEN``, environment or ``.env``),
never from the command line where other users of the machine could see it.

- ``run``: create the service, then the bot, and connect until stopped (Ctrl-C).
- ``sync [--guild ID] [--clear]``: log in over HTTP only (no gateway), publish the commands
  globally, or to one guild at once, or remove that guild's copies.
- ``commands [--json]``: the commands exactly as ``sync`` would publish them, built without a
  token, a service or a connection.
- ``console [--out DIR]``: the same commands typed as text against the same service and
  database, no token and no connection (:mod:`bot.discord.console`); commands come from the
  terminal, or from standard input when it is not one (a script). Files go to ``DIR``
  (default ``<data dir>/console``), and the log to ``DIR/console.log``.

Exit status: 0 done, 1 refused (no token, invalid settings, the service or Discord refused;
one line on stderr) or a scripted console line failed, 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot.discord.bot import MoodBot, SyncTarget, offline_payloads, sync_tree

if TYPE_CHECKING:
    from bot.settings import Settings

logger = logging.getLogger(__name__)
_OPTION_KINDS = {3: "text", 4: "integer", 5: "true/false", 6: "user", 7: "channel", 8: "role",
                 9: "mentionable", 10: "number", 11: "file"}


class Refused(Exception):
    """The command cannot go on; the message (one line, no secret) says why."""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "commands":
            payloads = asyncio.run(offline_payloads())
            print(json.dumps(payloads, indent=2, ensure_ascii=False) if args.json
                  else "\n".join(describe(payloads)))
            return 0
        if args.command == "console":
            return _console(args.out)
        if args.command == "sync" and args.clear and args.guild is None:
            raise Refused("--clear removes one guild's commands: give --guild")
        settings, token = _settings_and_token()
        if args.command == "sync":
            asyncio.run(_sync(token, args.guild, clear=args.clear))
        else:
            discord.utils.setup_logging(level=logging.INFO)
            asyncio.run(_run(settings, token))
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def describe(payloads: Sequence[dict[str, Any]]) -> list[str]:
    """One line per command of sync payloads: ``/mood track <query>  description``.

    Required options are shown as ``<name>``, optional ones as ``[name]``, choices as
    ``name:a|b``; a command with default member permissions says which.
    """
    lines: list[str] = []

    def walk(payload: dict[str, Any], prefix: str, permissions: str | None) -> None:
        options = payload.get("options", [])
        subcommands = [o for o in options if o.get("type") in (1, 2)]
        if subcommands:
            for sub in subcommands:
                walk(sub, f"{prefix} {payload['name']}", permissions)
            return
        words = [f"{prefix} {payload['name']}".strip()]
        for option in options:
            shown = option["name"]
            if option.get("choices"):
                shown += ":" + "|".join(str(c["value"]) for c in option["choices"])
            elif option.get("type") != 3:
                shown += f":{_OPTION_KINDS.get(option.get('type', 3), 'value')}"
            words.append(f"<{shown}>" if option.get("required") else f"[{shown}]")
        line = f"/{' '.join(words)}  {payload.get('description', '')}"
        lines.append(line + (f"  (needs: {permissions})" if permissions else ""))

    for payload in payloads:
        bits = payload.get("default_member_permissions")
        names = ([name for name, on in discord.Permissions(int(bits)) if on]
                 if bits is not None else [])
        walk(payload, "", ", ".join(names) if bits is not None else None)
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mer bot", description="The Discord bot.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="Start the bot (token: MER_DISCORD_TOKEN).")
    sync = commands.add_parser("sync", help="Publish the slash commands.")
    sync.add_argument("--guild", type=int, help="Publish to this guild only (at once).")
    sync.add_argument("--clear", action="store_true",
                      help="Remove the commands published to --guild.")
    listing = commands.add_parser("commands", help="Print the commands as they would be "
                                                   "published (no token, no connection).")
    listing.add_argument("--json", action="store_true", help="The payloads, as JSON.")
    console = commands.add_parser(
        "console", prog="mer console",
        help="Type the commands as text (no token, no connection); a script on stdin too.")
    console.add_argument("--out", type=Path, metavar="DIR",
                         help="Where charts and playlists are saved (default: "
                              "<data dir>/console).")
    return parser


def _settings() -> Settings:
    from bot.settings import SettingsError, get_settings

    try:
        return get_settings()
    except SettingsError as exc:
        raise Refused(str(exc)) from exc


def _settings_and_token() -> tuple[Settings, str]:
    settings = _settings()
    secret = settings.discord.discord_token
    token = secret.get_secret_value().strip() if secret is not None else ""
    if not token:
        raise Refused("no Discord token: set MER_DISCORD_TOKEN in the environment or .env "
                      "(the bot's token from the Discord developer portal; `mer bot commands` "
                      "needs none)")
    return settings, token


async def _run(settings: Settings, token: str) -> None:
    from bot.service import MoodService, ServiceError

    try:
        service = await MoodService.create(settings, allow_local_files=False)
    except ServiceError as exc:
        raise Refused(str(exc)) from exc
    async with service, MoodBot(service, companion=settings.discord.discord_companion,
                                freeze_heap=True) as bot:
        await _connected(bot.start(token))


def _console(out: Path | None) -> int:
    """Open the console on the settings' service; its exit status."""
    settings = _settings()
    folder = out if out is not None else settings.data_dir / "console"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Refused(f"cannot create {folder}: {exc.strerror or exc}") from exc
    _console_logging(folder / "console.log")
    for stream in (sys.stdin, sys.stdout, sys.stderr):  # no failure on odd bytes or emoji
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")
    return asyncio.run(_run_console(settings, folder))


async def _run_console(settings: Settings, folder: Path) -> int:
    from bot.discord.console.session import open_console
    from bot.discord.console.text import make_output
    from bot.service import MoodService, ServiceError

    try:
        service = await MoodService.create(settings, allow_local_files=False)
    except ServiceError as exc:
        raise Refused(str(exc)) from exc
    async with service:
        try:
            return await open_console(service, folder, stdin=sys.stdin,
                                      output=make_output(sys.stdout),
                                      interactive=sys.stdin.isatty())
        except Exception as exc:  # a bug: logged, one line
            logger.exception("the console failed")
            raise Refused(f"the console failed ({type(exc).__name__}); details in "
                          f"{folder / 'console.log'}") from exc


class _OneLine(logging.Formatter):
    """A record as one line, its traceback left to the log file."""

    def __init__(self, log: Path) -> None:
        super().__init__()
        self.log = log

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        return text + (f" (details in {self.log})" if record.exc_info else "")


def _console_logging(log: Path) -> None:
    """Everything to ``log`` with tracebacks; this project's warnings and every error to
    stderr as one line (the console's answers are on stdout)."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    to_file = logging.FileHandler(log, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_stderr = logging.StreamHandler()
    to_stderr.setLevel(logging.WARNING)
    to_stderr.setFormatter(_OneLine(log))
    to_stderr.addFilter(lambda r: r.levelno >= logging.ERROR or r.name.startswith("bot."))
    root.addHandler(to_file)
    root.addHandler(to_stderr)


async def _sync(token: str, guild_id: int | None, *, clear: bool = False) -> None:
    async with MoodBot(None) as bot:
        await _connected(bot.login(token))  # HTTP only; loads the cogs (setup_hook)
        guild = discord.Object(id=guild_id) if guild_id is not None else None
        target: SyncTarget = "global" if guild is None else "clear" if clear else "here"
        try:
            synced = await sync_tree(bot.tree, target, guild)
        except discord.HTTPException as exc:
            raise Refused(f"Discord refused the commands: {exc}") from exc
    where = "globally" if guild is None else f"to guild {guild_id}"
    print(f"synced {len(synced)} commands {where}")


async def _connected(step: Any) -> None:
    """Await a login or start, turning Discord's refusals into one-line errors."""
    try:
        await step
    except discord.LoginFailure as exc:
        raise Refused("Discord refused the token (MER_DISCORD_TOKEN): check it in the "
                      "developer portal") from exc
    except discord.PrivilegedIntentsRequired as exc:
        raise Refused("Discord refused the message content intent that companion mode asks "
                      "for (MER_DISCORD_COMPANION=true): enable it in the developer portal "
                      "(Bot, Privileged Gateway Intents), or turn companion mode off") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise Refused(f"cannot reach Discord: {type(exc).__name__}: {exc}") from exc
