"""Predictions keyed by any set of models; feedback keyed by (front-end, user); one provider list.

- ``predictions``: ``cldnn_version`` / ``ensemble_version`` become ``models`` (JSON,
  ``{kind: name-version}``) and ``models_key`` (its canonical text), unique per track, so a
  third fused model needs no schema change; ``embedding`` (JSON, nullable) holds a learned
  embedding of the clip.
- ``feedback``: ``frontend`` + ``user_id`` (not only Discord snowflakes), ``guild_id`` becomes
  ``context``; one label per (front-end, user, track), the newest kept.
- ``track_sources.provider``: the sources' own names (``youtube`` -> ``ytdlp``); the list is
  checked by the service's enum, not by a constraint that would repeat it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)
QUADRANT_CHECK = "quadrant IN ('Q1', 'Q2', 'Q3', 'Q4')"
PROVIDER_CHECK_0001 = ("provider IN ('spotify', 'deezer', 'itunes', 'youtube', 'local', "
                       "'url')")
_PREDICTION_COMMON = ("id", "track_id", "probabilities", "quadrant", "valence", "arousal",
                      "confidence", "timeline", "elapsed_ms", "created_at")


def _models_key(models: dict[str, str]) -> str:
    return ";".join(f"{kind}={models[kind]}" for kind in sorted(models))


def _predictions_table(*, new: bool) -> list[Any]:
    columns: list[Any] = [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
    ]
    if new:
        columns += [sa.Column("models_key", sa.String(length=512), nullable=False),
                    sa.Column("models", sa.JSON(), nullable=False)]
    else:
        columns += [
            sa.Column("cldnn_version", sa.String(length=128), server_default="",
                      nullable=False),
            sa.Column("ensemble_version", sa.String(length=128), server_default="",
                      nullable=False)]
    columns += [
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("quadrant", sa.String(length=2), nullable=False),
        sa.Column("valence", sa.Double(), nullable=False),
        sa.Column("arousal", sa.Double(), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("timeline", sa.JSON(), nullable=False),
    ]
    if new:
        columns.append(sa.Column("embedding", sa.JSON(), nullable=True))
    columns += [
        sa.Column("elapsed_ms", sa.Double(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint(QUADRANT_CHECK, name=op.f("ck_predictions_quadrant")),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"],
                                name=op.f("fk_predictions_track_id_tracks"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
    ]
    if new:
        columns.append(sa.UniqueConstraint("track_id", "models_key",
                                           name=op.f("uq_predictions_track_id_models_key")))
    else:
        columns.append(sa.UniqueConstraint(
            "track_id", "cldnn_version", "ensemble_version",
            name=op.f("uq_predictions_track_id_cldnn_version_ensemble_version")))
    return columns


def _feedback_table(*, new: bool) -> list[Any]:
    columns: list[Any] = [sa.Column("id", sa.Integer(), nullable=False)]
    if new:
        columns += [sa.Column("frontend", sa.String(length=16), nullable=False),
                    sa.Column("user_id", sa.String(length=64), nullable=False),
                    sa.Column("context", sa.String(length=64), nullable=True)]
    else:
        columns += [sa.Column("user_id", sa.String(length=20), nullable=False),
                    sa.Column("guild_id", sa.String(length=20), nullable=True)]
    columns += [
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("quadrant", sa.String(length=2), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint(QUADRANT_CHECK, name=op.f("ck_feedback_quadrant")),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"],
                                name=op.f("fk_feedback_track_id_tracks"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
    ]
    if new:
        columns.append(sa.UniqueConstraint("frontend", "user_id", "track_id",
                                           name=op.f("uq_feedback_frontend_user_id_track_id")))
    return columns


def _replace(name: str, columns: list[Any], old_name: str, rows: list[dict[str, Any]]) -> None:
    """Replace the table ``old_name`` by one of ``columns`` holding ``rows`` (read before).

    SQLite (no transactional DDL here): the new table is built and filled under the temporary
    ``name`` beside the old one, then swapped in, so a failure leaves the old table whole.
    PostgreSQL (transactional DDL): the old table is dropped first, because the names of
    primary and unique keys (their indexes) are unique per schema, not per table; the
    serial id's sequence then continues after the copied rows.
    """
    if op.get_bind().dialect.name == "sqlite":
        table = op.create_table(name, *columns)
        if rows:
            op.bulk_insert(table, rows)
        op.drop_table(old_name)
        op.rename_table(table.name, old_name)
        return
    op.drop_table(old_name)
    table = op.create_table(old_name, *columns)
    if rows:
        op.bulk_insert(table, rows)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"SELECT setval(pg_get_serial_sequence('{old_name}', 'id'), "
                   f"COALESCE(MAX(id), 0) + 1, false) FROM {old_name}")


def _rows(table: str, json_columns: Sequence[str] = ()) -> list[dict[str, Any]]:
    # A typed select, so that JSON and timestamps come back as Python objects on every dialect
    # (and go back in through bulk_insert unchanged).
    def kind(name: str) -> Any:
        if name in json_columns:
            return sa.JSON()
        return UTC_DATETIME if name == "created_at" else None

    names = [c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)]
    query = sa.select(*(sa.column(n, kind(n)) for n in names)).select_from(sa.table(table))
    return [dict(r._mapping) for r in op.get_bind().execute(query)]


def upgrade() -> None:
    """Predictions by models key, feedback by front-end, provider names of the sources."""
    old = _rows("predictions", ("probabilities", "timeline"))
    rows = []
    for r in old:
        models = {k: r[f"{k}_version"] for k in ("cldnn", "ensemble") if r[f"{k}_version"]}
        rows.append({**{c: r[c] for c in _PREDICTION_COMMON}, "models": models,
                     "models_key": _models_key(models), "embedding": None})
    _replace("predictions_0002", _predictions_table(new=True), "predictions", rows)

    newest: dict[tuple[str, int], dict[str, Any]] = {}
    for r in sorted(_rows("feedback"), key=lambda r: (r["created_at"], r["id"])):
        newest[(r["user_id"], r["track_id"])] = r  # one label per user and track: the last
    op.drop_index("ix_feedback_track_id", table_name="feedback")
    op.drop_index("ix_feedback_user_id", table_name="feedback")
    _replace("feedback_0002", _feedback_table(new=True), "feedback",
             [{"id": r["id"], "frontend": "discord", "user_id": r["user_id"],
               "context": r["guild_id"], "track_id": r["track_id"], "quadrant": r["quadrant"],
               "created_at": r["created_at"]} for r in newest.values()])
    op.create_index("ix_feedback_track_id", "feedback", ["track_id"], unique=False)

    with op.batch_alter_table("track_sources") as batch:
        batch.drop_constraint(op.f("ck_track_sources_provider"), type_="check")
    op.execute("UPDATE track_sources SET provider = 'ytdlp' WHERE provider = 'youtube'")


def downgrade() -> None:
    """Back to two model-version columns, Discord-only feedback, the 0001 provider names.

    Predictions that the two old columns cannot tell apart (other model kinds) keep the newest;
    feedback from other front-ends is dropped.
    """
    op.execute("UPDATE track_sources SET provider = 'youtube' WHERE provider = 'ytdlp'")
    with op.batch_alter_table("track_sources") as batch:
        batch.create_check_constraint(op.f("ck_track_sources_provider"), PROVIDER_CHECK_0001)

    op.drop_index("ix_feedback_track_id", table_name="feedback")
    feedback = [r for r in _rows("feedback") if r["frontend"] == "discord"]
    _replace("feedback_0001", _feedback_table(new=False), "feedback",
             [{"id": r["id"], "user_id": r["user_id"][:20], "guild_id": r["context"],
               "track_id": r["track_id"], "quadrant": r["quadrant"],
               "created_at": r["created_at"]} for r in feedback])
    op.create_index("ix_feedback_track_id", "feedback", ["track_id"], unique=False)
    op.create_index("ix_feedback_user_id", "feedback", ["user_id"], unique=False)

    kept: dict[tuple[int, str, str], dict[str, Any]] = {}
    old = _rows("predictions", ("probabilities", "timeline", "models"))
    for r in sorted(old, key=lambda r: (r["created_at"], r["id"])):
        versions = (r["models"].get("cldnn", ""), r["models"].get("ensemble", ""))
        kept[(r["track_id"], *versions)] = {
            **{c: r[c] for c in _PREDICTION_COMMON},
            "cldnn_version": versions[0], "ensemble_version": versions[1]}
    _replace("predictions_0001", _predictions_table(new=False), "predictions",
             list(kept.values()))
