"""A listening history: tracks played or suggested, per scope (CLI, Discord guild, MPD server).

- ``track_events``: one row per track played or suggested in a scope (``cli``,
  ``discord:<guild id>``, ``mpd:<host:port>``) at a time; the service excludes the tracks
  most recently seen in a scope from its suggestions. Rows go with their track; the index
  on (scope, at) serves "the most recent tracks here".

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Timestamps: UTC, timezone-aware (bot.storage.models.UTCDateTime on the Python side).
UTC_DATETIME = sa.DateTime(timezone=True)
KIND_CHECK = "kind IN ('played', 'suggested')"


def upgrade() -> None:
    """Create ``track_events`` and its indexes."""
    op.create_table(
        "track_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint(KIND_CHECK, name=op.f("ck_track_events_kind")),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"],
                                name=op.f("fk_track_events_track_id_tracks"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_track_events")),
    )
    op.create_index("ix_track_events_scope_at", "track_events", ["scope", "at"], unique=False)
    op.create_index(op.f("ix_track_events_track_id"), "track_events", ["track_id"],
                    unique=False)


def downgrade() -> None:
    """Drop ``track_events`` (the history is lost; nothing else refers to it)."""
    op.drop_index(op.f("ix_track_events_track_id"), table_name="track_events")
    op.drop_index("ix_track_events_scope_at", table_name="track_events")
    op.drop_table("track_events")
