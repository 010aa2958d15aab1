"""Initial schema: tracks and sources, features, predictions, feedback, guilds, queue, registry.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Timestamps: UTC, timezone-aware (bot.storage.models.UTCDateTime on the Python side).
UTC_DATETIME = sa.DateTime(timezone=True)
QUADRANT_CHECK = "quadrant IN ('Q1', 'Q2', 'Q3', 'Q4')"


def upgrade() -> None:
    """Create every table, index and constraint."""
    op.create_table(
        "guilds",
        sa.Column("id", sa.String(length=20), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guilds")),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_model_versions_name_version")),
    )
    op.create_table(
        "tracks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("artist", sa.String(), nullable=True),
        sa.Column("album", sa.String(), nullable=True),
        sa.Column("duration_s", sa.Double(), nullable=True),
        sa.Column("isrc", sa.String(length=12), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracks")),
    )
    op.create_index(op.f("ix_tracks_isrc"), "tracks", ["isrc"], unique=False)

    op.create_table(
        "track_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=False),
        sa.Column("url", sa.String(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("served_preview", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint(
            "provider IN ('spotify', 'deezer', 'itunes', 'youtube', 'local', 'url')",
            name=op.f("ck_track_sources_provider")),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"],
                                name=op.f("fk_track_sources_track_id_tracks"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_track_sources")),
        sa.UniqueConstraint("provider", "provider_id",
                            name=op.f("uq_track_sources_provider_provider_id")),
    )
    op.create_index(op.f("ix_track_sources_track_id"), "track_sources", ["track_id"],
                    unique=False)

    op.create_table(
        "audio_features",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint("kind IN ('descriptors', 'spotify')",
                           name=op.f("ck_audio_features_kind")),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"],
                                name=op.f("fk_audio_features_track_id_tracks"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audio_features")),
        sa.UniqueConstraint("track_id", "kind", "version",
                            name=op.f("uq_audio_features_track_id_kind_version")),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        # '' (not NULL) when a model took no part: NULLs would defeat the unique constraint.
        sa.Column("cldnn_version", sa.String(length=128), server_default="", nullable=False),
        sa.Column("ensemble_version", sa.String(length=128), server_default="",
                  nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("quadrant", sa.String(length=2), nullable=False),
        sa.Column("valence", sa.Double(), nullable=False),
        sa.Column("arousal", sa.Double(), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("timeline", sa.JSON(), nullable=False),
        sa.Column("elapsed_ms", sa.Double(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint(QUADRANT_CHECK, name=op.f("ck_predictions_quadrant")),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"],
                                name=op.f("fk_predictions_track_id_tracks"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
        sa.UniqueConstraint("track_id", "cldnn_version", "ensemble_version",
                            name=op.f("uq_predictions_track_id_cldnn_version_ensemble_version")),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=20), nullable=False),
        sa.Column("guild_id", sa.String(length=20), nullable=True),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("quadrant", sa.String(length=2), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint(QUADRANT_CHECK, name=op.f("ck_feedback_quadrant")),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"],
                                name=op.f("fk_feedback_track_id_tracks"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
    )
    op.create_index(op.f("ix_feedback_track_id"), "feedback", ["track_id"], unique=False)
    op.create_index(op.f("ix_feedback_user_id"), "feedback", ["user_id"], unique=False)

    op.create_table(
        "queue_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("guild_id", sa.String(length=20), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("queued_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["guild_id"], ["guilds.id"],
                                name=op.f("fk_queue_entries_guild_id_guilds"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"],
                                name=op.f("fk_queue_entries_track_id_tracks"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_entries")),
    )
    op.create_index("ix_queue_entries_guild_id_queued_at", "queue_entries",
                    ["guild_id", "queued_at"], unique=False)
    op.create_index(op.f("ix_queue_entries_track_id"), "queue_entries", ["track_id"],
                    unique=False)

    op.create_table(
        "retrain_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("finished_at", UTC_DATETIME, nullable=True),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')",
                           name=op.f("ck_retrain_jobs_status")),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"],
                                name=op.f("fk_retrain_jobs_model_version_id_model_versions"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retrain_jobs")),
    )


def downgrade() -> None:
    """Drop every table (children first); their indexes and constraints go with them."""
    op.drop_table("retrain_jobs")
    op.drop_index("ix_queue_entries_track_id", table_name="queue_entries")
    op.drop_index("ix_queue_entries_guild_id_queued_at", table_name="queue_entries")
    op.drop_table("queue_entries")
    op.drop_index("ix_feedback_user_id", table_name="feedback")
    op.drop_index("ix_feedback_track_id", table_name="feedback")
    op.drop_table("feedback")
    op.drop_table("predictions")
    op.drop_table("audio_features")
    op.drop_index("ix_track_sources_track_id", table_name="track_sources")
    op.drop_table("track_sources")
    op.drop_index("ix_tracks_isrc", table_name="tracks")
    op.drop_table("tracks")
    op.drop_table("model_versions")
    op.drop_table("guilds")
