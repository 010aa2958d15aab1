"""The Discord queue's state machine: each queue entry is queued, playing, played, skipped or
removed, with when it started and finished.

- ``queue_entries.state``: ``queued`` (waiting), ``playing`` (the guild's current track, at
  most one per guild), ``played``, ``skipped`` or ``removed`` (history). Existing rows become
  ``played``: before this revision nothing played them, and they must not all wake up as a
  queue.
- ``started_at`` / ``finished_at``: when the entry became current, and when it left.
- The index on (guild_id, state, id) serves "this guild's current and queued entries, in
  order".

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)
STATE_CHECK = "state IN ('queued', 'playing', 'played', 'skipped', 'removed')"


def upgrade() -> None:
    """Add the state columns (existing entries count as played) and their index."""
    with op.batch_alter_table("queue_entries") as batch:
        batch.add_column(sa.Column("state", sa.String(length=12), nullable=False,
                                   server_default="played"))
        batch.add_column(sa.Column("started_at", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("finished_at", UTC_DATETIME, nullable=True))
        batch.create_check_constraint("state", STATE_CHECK)
    op.create_index("ix_queue_entries_guild_id_state_id", "queue_entries",
                    ["guild_id", "state", "id"], unique=False)


def downgrade() -> None:
    """Drop the state columns (the queue's order survives; its states do not)."""
    op.drop_index("ix_queue_entries_guild_id_state_id", table_name="queue_entries")
    with op.batch_alter_table("queue_entries") as batch:
        batch.drop_constraint(op.f("ck_queue_entries_state"), type_="check")
        batch.drop_column("finished_at")
        batch.drop_column("started_at")
        batch.drop_column("state")
