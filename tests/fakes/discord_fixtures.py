"""Fixtures of the Discord tests: a stored library, a service on a copy of it, a logged-in bot.

Import them by name into a test module (``from tests.fakes.discord_fixtures import ...``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.discord.bot import MoodBot
from bot.service import MoodService
from tests.fakes.interactions import log_in
from tests.fakes.moodlib import build_library, fill_library, open_service, service_on


@pytest.fixture(scope="module")
def library_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template database holding the eight-track library, built once per module."""
    return build_library(tmp_path_factory.mktemp("library") / "template.db")


@pytest.fixture
async def service(library_db: Path, tmp_path: Path) -> AsyncIterator[MoodService]:
    """A service on a fresh copy of the library (no models loaded)."""
    async with open_service(library_db, tmp_path) as opened:
        yield opened


@pytest.fixture(name="service", params=["sqlite", "postgres"])
async def service_on_both_backends(request: pytest.FixtureRequest, library_db: Path,
                                   tmp_path: Path) -> AsyncIterator[MoodService]:
    """:func:`service` on SQLite, then on a PostgreSQL database holding the same library
    (``tests/fakes/postgres.py``). A module imports it to run its tests on both: it replaces
    ``service`` there (and so ``bot``, which uses it)."""
    if request.param == "sqlite":
        async with open_service(library_db, tmp_path) as opened:
            yield opened
        return
    url = request.getfixturevalue("postgres_url")
    fill_library(url)
    async with service_on(url) as opened:
        yield opened


@pytest.fixture
async def bot(service: MoodService) -> AsyncIterator[MoodBot]:
    """The bot with its cogs loaded, logged in without a gateway."""
    async with MoodBot(service) as mood_bot:
        log_in(mood_bot)
        await mood_bot.setup_hook()
        yield mood_bot
