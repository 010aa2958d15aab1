"""The database schema: SQLAlchemy 2 typed models on one declarative base.

Alembic migrations in ``migrations/`` are the only way the schema of a database changes;
these models must stay equal to the newest migration (``tests/test_db.py`` checks it).

Conventions
-----------
- Timestamps are timezone-aware UTC :class:`~datetime.datetime` values on both sides (SQLite
  stores them without an offset; :class:`UTCDateTime` restores it).
- A prediction is keyed by its track and ``models_key``, the canonical text of the model
  versions that made it and their fusion weights
  (``"cldnn=mood-4q-cldnn-1*0.4;ensemble=mood-4q-ensemble-1*0.6"``), so a new model version
  or new weights mean a new prediction and any number of fused models fits one column.
- Users are named by (front-end, id on that front-end): a Discord snowflake, a local user
  name, ... stored as strings. Tables that belong to one front-end (Discord's guilds and
  queues) are declared by that front-end on the same :class:`Base`.
- Provider names are whatever :mod:`bot.sources` names them; the service validates them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Kinds of stored feature vectors (``audio_features.kind``).
FeatureKind = Literal["descriptors", "spotify"]
FEATURE_KINDS: Final[tuple[str, ...]] = ("descriptors", "spotify")
#: States of a retraining job (``retrain_jobs.status``).
JobStatus = Literal["queued", "running", "succeeded", "failed"]
JOB_STATUSES: Final[tuple[str, ...]] = ("queued", "running", "succeeded", "failed")
QUADRANT_VALUES: Final[tuple[str, ...]] = ("Q1", "Q2", "Q3", "Q4")
#: What happened to a track in a listening history (``track_events.kind``).
EventKind = Literal["played", "suggested"]
EVENT_KINDS: Final[tuple[str, ...]] = ("played", "suggested")

#: Deterministic constraint names, so that later migrations (and SQLite batch mode) can
#: refer to them.
NAMING_CONVENTION: Final[dict[str, str]] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (UTC).

    Naive datetimes are refused on write: their meaning depends on the machine's clock.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC; SQLite gets a naive UTC value (it cannot store an offset)."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None,
                             dialect: Dialect) -> datetime | None:
        """Attach UTC to values read back without an offset."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """The declarative base of every table of the application."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (read by SQLAlchemy at class creation)
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        dict[str, float]: JSON(),
        dict[str, str]: JSON(),
        list[dict[str, Any]]: JSON(),
        list[float]: JSON(),
    }


class Track(Base):
    """A recording, independent of where it was found (one row per ISRC, ideally)."""

    __tablename__ = "tracks"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String)
    artist: Mapped[str | None] = mapped_column(String)
    album: Mapped[str | None] = mapped_column(String)
    duration_s: Mapped[float | None]
    isrc: Mapped[str | None] = mapped_column(String(12), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"Track(id={self.id!r}, title={self.title!r}, artist={self.artist!r})"


class TrackSource(Base):
    """Where a track can be found: a provider's id for it, and the URL or path."""

    __tablename__ = "track_sources"
    __table_args__ = (UniqueConstraint("provider", "provider_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"),
                                          index=True)
    provider: Mapped[str] = mapped_column(String(16))
    #: The provider's id; for ``local`` the absolute path of the file.
    provider_id: Mapped[str] = mapped_column(String)
    url: Mapped[str | None] = mapped_column(String)
    #: For local files ``"size:mtime_ns"``, to notice that a file changed.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    #: Whether the audio analysed was the provider's preview clip rather than the full track.
    served_preview: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AudioFeatures(Base):
    """A feature vector of a track (audio descriptors, or Spotify's audio features)."""

    __tablename__ = "audio_features"
    __table_args__ = (
        UniqueConstraint("track_id", "kind", "version"),
        CheckConstraint(_one_of("kind", FEATURE_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(64))
    values: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Prediction(Base):
    """The mood of a track according to one set of model versions."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("track_id", "models_key"),
        CheckConstraint(_one_of("quadrant", QUADRANT_VALUES), name="quadrant"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"))
    #: Canonical text of ``models`` and their fusion weights (see :func:`models_key`).
    models_key: Mapped[str] = mapped_column(String(512))
    #: ``{kind: name-version}`` of the fused models.
    models: Mapped[dict[str, str]]
    #: ``{"Q1": p1, ..., "Q4": p4}``.
    probabilities: Mapped[dict[str, float]]
    quadrant: Mapped[str] = mapped_column(String(2))
    valence: Mapped[float]
    arousal: Mapped[float]
    confidence: Mapped[float]
    #: ``[{"start", "end", "quadrant", "probabilities"}, ...]``, one per analysis window.
    timeline: Mapped[list[dict[str, Any]]]
    #: A learned embedding of the clip (for "tracks like this one"), when a model gives one.
    embedding: Mapped[list[float] | None]
    elapsed_ms: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def models_key(models: Mapping[str, str], weights: Mapping[str, float]) -> str:
    """The canonical text of a set of fused models: ``"kind=version*weight;..."``, sorted.

    The fusion weights belong to the key: new weights with the same models give other moods,
    so the predictions of the old weights must not be served as theirs.

    Raises
    ------
    KeyError
        A model without a weight.
    """
    return ";".join(f"{kind}={models[kind]}*{weights[kind]:g}" for kind in sorted(models))


class Feedback(Base):
    """A user's mood label for a track (training data for retraining).

    One label per user and track: a new answer replaces the old one. ``context`` says where
    it was given (a Discord guild's id, None in direct messages or the console); it is not a
    foreign key, so labels outlive a guild's settings.
    """

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("frontend", "user_id", "track_id"),
        CheckConstraint(_one_of("quadrant", QUADRANT_VALUES), name="quadrant"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The front-end the user came through: ``discord``, ``cli``, ``mpd``.
    frontend: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(64))
    context: Mapped[str | None] = mapped_column(String(64))
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"),
                                          index=True)
    quadrant: Mapped[str] = mapped_column(String(2))
    #: When the current label was given (a new answer replaces it).
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrackEvent(Base):
    """A track played or suggested in one place: the history that keeps suggestions fresh.

    ``scope`` names the place, as the front-end chooses: ``cli``, ``discord:<guild id>``,
    ``mpd:<host:port>``. Rows go with their track (``ON DELETE CASCADE``); the index on
    (scope, at) serves "the tracks most recently seen here".
    """

    __tablename__ = "track_events"
    __table_args__ = (
        Index("ix_track_events_scope_at", "scope", "at"),
        CheckConstraint(_one_of("kind", EVENT_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"),
                                          index=True)
    scope: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    """A trained model in the registry, its metrics, and whether it is the live one."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    #: The model card's kind: ``cldnn``, ``ensemble``, ...
    kind: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    live: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RetrainJob(Base):
    """A retraining run: who asked, its state and log, and the model it produced."""

    __tablename__ = "retrain_jobs"
    __table_args__ = (CheckConstraint(_one_of("status", JOB_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    log: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"))
