"""``mer console`` and ``mer run``: the bot's commands typed as text, or the bot itself.

``mer console`` runs ``python -m bot.discord console`` in a child process, as ``mer bot``
does (front-ends never import each other): the same commands as on Discord, against the same
service and database, with no token and no connection. Commands come from the terminal, or
from standard input when it is not one (``mer console < script.txt``).

``mer run`` starts the bot when a token is set (``MER_DISCORD_TOKEN``); without one it scans
the demo library (immich-memories-music, as ``mer scan`` scans a folder: what is stored
already is skipped) and opens the console on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bot.cli import common, library
from bot.cli.common import app
from bot.cli.discord_bot import delegate

OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Where charts and playlists are saved (default: <data dir>/console).")]


def _console_args(out: Path | None) -> list[str]:
    return ["console", *(["--out", str(out)] if out is not None else [])]


@app.command("console")
def console_command(out: OutOpt = None) -> None:
    """Type the Discord bot's commands as text: /mood track calm, press 1, help, quit.

    Reads a script from standard input when it is not a terminal (exit status 1 if a line failed).
    """
    delegate(*_console_args(out))


@app.command("run")
def run_command(out: OutOpt = None) -> None:
    """Start the bot, or without a token the console on the demo library.

    With MER_DISCORD_TOKEN set: `mer bot run`. Without: scan the demo library, then `mer console`.
    """
    token = common.settings().discord.discord_token
    if token is not None and token.get_secret_value().strip():
        delegate("run")
    typer.echo("No Discord token (MER_DISCORD_TOKEN): scanning the demo library, then "
               "opening the console.", err=True)
    library.scan(common.demo_library(), workers=None, verbose=False)
    delegate(*_console_args(out))


