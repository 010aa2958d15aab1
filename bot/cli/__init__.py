"""The ``mer`` command line.

``mer classify`` (files, search text, URLs), ``mer scan`` (a local library into the
database), ``mer models``, ``mer spotify``, ``mer demo`` and ``mer db`` (schema migrations).
Each group lives in its own module; this one assembles the Typer app.
"""

from __future__ import annotations

import logging

from bot.cli import audio, db, library
from bot.cli.common import app

app.add_typer(db.db_app, name="db")
__all__ = ["app", "audio", "library", "main"]


def main() -> None:
    """Entry point with logging configured."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
