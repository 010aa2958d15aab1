"""The ``mer`` command line.

``mer classify`` (files, search text, URLs), ``mer scan`` (a local library into the
database), ``mer recommend``, ``mer journey`` and ``mer stats`` (the stored library by mood),
``mer models``, ``mer spotify``, ``mer demo``, ``mer db`` (schema migrations), ``mer bot``
(the Discord bot), ``mer console`` (its commands typed as text), ``mer run`` (the bot, or the
console on the demo library without a token) and ``mer listen`` (the MPD plugin).
Each group lives in its own module; this one assembles the Typer app. What they print is
drawn by ``render`` (tables that fit the terminal) and ``progress`` (progress bars, the scan
summary); ``interrupt`` makes Ctrl-C stop a command cleanly.
"""

from __future__ import annotations

import logging

from bot.cli import audio, console, db, discord_bot, library, listen, playlists
from bot.cli.common import app

app.add_typer(db.db_app, name="db")
app.add_typer(discord_bot.bot_app, name="bot")
__all__ = ["app", "audio", "console", "library", "listen", "main", "playlists"]


def main() -> None:
    """Entry point with logging configured."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
