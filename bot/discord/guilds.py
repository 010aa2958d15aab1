"""A guild's settings: where the bot posts, and what it does on its own.

Admins change them with ``/mood-admin settings``; the queue cog reads them when a track
starts (post a now-playing embed with suggestions? append a track when the queue runs low?)
and the companion listener to know which channel to read. They are stored as JSON in the
``guilds`` table (:class:`~bot.discord.models.Guild`), so they survive restarts and a new
setting needs no migration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.discord.models import Guild
from bot.service import ServiceError

if TYPE_CHECKING:
    from bot.service import MoodService


@dataclass(frozen=True)
class GuildConfig:
    """What one guild enabled.

    Attributes
    ----------
    suggest_channel_id : int or None
        Where now-playing embeds and suggestions are posted (None: nowhere).
    auto_suggest : bool
        Post a now-playing embed with three mood-matched suggestions when a track starts.
    auto_dj : bool
        Append a mood-matched track when the queue runs low.
    companion_channel_id : int or None
        Companion mode: the channel whose music-bot messages are read and answered with
        their mood (None: off).
    """

    suggest_channel_id: int | None = None
    auto_suggest: bool = False
    auto_dj: bool = False
    companion_channel_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored form (channel ids as strings: snowflakes exceed JSON's safe ints)."""
        stored: dict[str, Any] = {}
        for name, value in dataclasses.asdict(self).items():
            stored[name] = str(value) if name.endswith("_id") and value is not None else value
        return stored

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> GuildConfig:
        """Read the stored form, ignoring keys this version does not know."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name not in stored:
                continue
            value = stored[field.name]
            if field.name.endswith("_id"):
                values[field.name] = int(value) if value not in (None, "") else None
            else:
                values[field.name] = bool(value)
        return cls(**values)


class GuildSettings:
    """Read and change guilds' settings in the service's database.

    Parameters
    ----------
    service : MoodService
        Whose database holds the ``guilds`` table.
    """

    def __init__(self, service: MoodService) -> None:
        self._service = service
        self._cache: dict[int, GuildConfig] = {}

    async def get(self, guild_id: int) -> GuildConfig:
        """A guild's settings (the defaults when it never changed any)."""
        cached = self._cache.get(guild_id)
        if cached is not None:
            return cached
        async with self._service.store.sessions() as session:
            row = await session.get(Guild, str(guild_id))
        config = GuildConfig.from_json(row.settings) if row is not None else GuildConfig()
        self._cache[guild_id] = config
        return config

    async def update(self, guild_id: int, **changes: Any) -> GuildConfig:
        """Change some of a guild's settings and store them.

        Parameters
        ----------
        guild_id : int
            The guild.
        **changes
            Fields of :class:`GuildConfig` and their new values.

        Returns
        -------
        GuildConfig
            The settings now stored.

        Raises
        ------
        ServiceError
            A change names no setting, or the database refused the write.
        """
        known = {f.name for f in dataclasses.fields(GuildConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ServiceError(f"unknown guild setting: {', '.join(unknown)}")
        async with self._service.transaction(f"settings of guild {guild_id}") as session:
            row = await session.get(Guild, str(guild_id))
            if row is None:
                row = Guild(id=str(guild_id), settings={})
                session.add(row)
            config = dataclasses.replace(GuildConfig.from_json(row.settings or {}), **changes)
            row.settings = config.to_json()
        self._cache[guild_id] = config
        return config

    async def companion_guilds(self) -> dict[int, int]:
        """Every guild with companion mode on: guild id to the channel id it reads."""
        from sqlalchemy import select

        async with self._service.store.sessions() as session:
            rows = (await session.scalars(select(Guild))).all()
        channels: dict[int, int] = {}
        for row in rows:
            config = GuildConfig.from_json(row.settings or {})
            self._cache[int(row.id)] = config
            if config.companion_channel_id is not None:
                channels[int(row.id)] = config.companion_channel_id
        return channels
