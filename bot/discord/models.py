"""Tables that only the Discord front-end uses: guild settings and queue entries.

They live on the application's declarative base (re-exported by :mod:`bot.service`), so the
migrations in ``migrations/`` manage them with every other table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.service import Base, utcnow


class Guild(Base):
    """A Discord guild's settings (the id is the guild's snowflake)."""

    __tablename__ = "guilds"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


#: The states of a queue entry: waiting, the guild's current track (at most one), and the
#: three ways of leaving the queue, kept as its history.
QueueState = Literal["queued", "playing", "played", "skipped", "removed"]
QUEUE_STATES: Final[tuple[str, ...]] = ("queued", "playing", "played", "skipped", "removed")


class QueueEntry(Base):
    """A track queued in a guild, and what became of it (the queue history).

    A guild's queue is its ``playing`` entry, then its ``queued`` entries by id.
    """

    __tablename__ = "queue_entries"
    __table_args__ = (
        Index("ix_queue_entries_guild_id_queued_at", "guild_id", "queued_at"),
        Index("ix_queue_entries_guild_id_state_id", "guild_id", "state", "id"),
        CheckConstraint("state IN ('queued', 'playing', 'played', 'skipped', 'removed')",
                        name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    guild_id: Mapped[str] = mapped_column(ForeignKey("guilds.id", ondelete="CASCADE"))
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"),
                                          index=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(12), default="queued",
                                       server_default="played")
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
