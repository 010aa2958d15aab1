"""Guild settings: defaults, updates that survive a new service, unknown names refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.discord.guilds import GuildConfig, GuildSettings
from bot.service import MoodService, ServiceError
from tests.fakes.discord_fixtures import (  # noqa: F401  (SQLite and PostgreSQL)
    service_on_both_backends,
)


async def test_defaults_then_update_persists(service: MoodService, tmp_path: Path) -> None:
    settings = GuildSettings(service)
    assert await settings.get(1) == GuildConfig()
    changed = await settings.update(1, auto_dj=True, suggest_channel_id=2**62 + 5)
    assert changed == GuildConfig(suggest_channel_id=2**62 + 5, auto_dj=True)
    again = await GuildSettings(service).get(1)  # read back from the database, not the cache
    assert again == changed
    assert await settings.get(2) == GuildConfig()


async def test_companion_guilds_lists_only_enabled(service: MoodService) -> None:
    settings = GuildSettings(service)
    await settings.update(10, companion_channel_id=99)
    await settings.update(11, auto_suggest=True)
    assert await GuildSettings(service).companion_guilds() == {10: 99}
    await settings.update(10, companion_channel_id=None)
    assert await settings.companion_guilds() == {}


async def test_unknown_setting_refused(service: MoodService) -> None:
    with pytest.raises(ServiceError, match="unknown guild setting: volume"):
        await GuildSettings(service).update(1, volume=11)


def test_stored_form_ignores_unknown_keys() -> None:
    stored = {"auto_dj": True, "companion_channel_id": "42", "from_the_future": 1}
    assert GuildConfig.from_json(stored) == GuildConfig(auto_dj=True, companion_channel_id=42)
    assert GuildConfig.from_json(GuildConfig(suggest_channel_id=7).to_json()) == \
        GuildConfig(suggest_channel_id=7)
