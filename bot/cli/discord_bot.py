"""``mer bot run|sync|commands``: the Discord bot, run as ``python -m bot.discord``.

Front-ends never import each other, so these commands start the Discord front-end in a child
process with this Python; it reads the same settings (the token from ``MER_DISCORD_TOKEN``,
never from the command line) and its exit status becomes this command's.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import typer

bot_app = typer.Typer(help="The Discord bot: run it, publish its slash commands, list them.",
                      no_args_is_help=True)


def _child(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot.discord", *args]


def delegate(*args: str) -> None:
    """Run ``python -m bot.discord <args>`` with this terminal (its standard input too);
    exit with its status."""
    process = subprocess.Popen(_child(*args))
    try:
        status = process.wait()
    except KeyboardInterrupt:  # the child got the same Ctrl-C: let it close cleanly
        status = process.wait()
    raise typer.Exit(code=status)


@bot_app.command("run")
def run() -> None:
    """Start the bot (token: MER_DISCORD_TOKEN); Ctrl-C stops it."""
    delegate("run")


@bot_app.command("sync")
def sync(
    guild: Annotated[int | None, typer.Option(help="Publish to this guild only; it sees the "
                                                   "commands at once (for testing).")] = None,
    clear: Annotated[bool, typer.Option(help="Remove the commands published to --guild.")
                     ] = False,
) -> None:
    """Publish the slash commands to Discord (needed once, and after they change)."""
    args = ["sync"]
    if guild is not None:
        args += ["--guild", str(guild)]
    if clear:
        args.append("--clear")
    delegate(*args)


@bot_app.command("commands")
def commands(
    as_json: Annotated[bool, typer.Option("--json", help="The payloads as JSON.")] = False,
) -> None:
    """Print the slash commands as `mer bot sync` would publish them (no token needed)."""
    done = subprocess.run(_child("commands", *(["--json"] if as_json else [])),
                          capture_output=True, text=True, encoding="utf-8", check=False)
    if done.stdout:
        typer.echo(done.stdout, nl=False)
    if done.stderr:
        typer.echo(done.stderr, err=True, nl=False)
    raise typer.Exit(code=done.returncode)
