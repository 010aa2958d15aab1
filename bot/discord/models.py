"""Tables that only the Discord front-end uses: guild settings and queue entries.

They live on the application's declarative base (re-exported by :mod:`bot.service`), so the
migrations in ``migrations/`` manage them with every other table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.service import Base, utcnow


class Guild(Base):
    """A Discord guild's settings (the id is the guild's snowflake)."""

    __tablename__ = "guilds"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class QueueEntry(Base):
    """A track queued in a guild (the queue history)."""

    __tablename__ = "queue_entries"
    __table_args__ = (Index("ix_queue_entries_guild_id_queued_at", "guild_id", "queued_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    guild_id: Mapped[str] = mapped_column(ForeignKey("guilds.id", ondelete="CASCADE"))
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"),
                                          index=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
