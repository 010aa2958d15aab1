"""Storage of the mood companion: SQLAlchemy models, async engine, migrations, store.

Typical start-up::

    engine = create_engine(settings.resolved_database_url())
    await check_schema(engine)          # or upgrade_async(engine) when MER_AUTO_UPGRADE
    store = Store(make_sessionmaker(engine))
    ...
    await engine.dispose()
"""

from bot.db.engine import create_engine, default_database_url, make_sessionmaker
from bot.db.errors import (
    InvalidRecordError,
    ModelConflictError,
    NotFoundError,
    SchemaOutOfDateError,
    StorageError,
)
from bot.db.migrate import (
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
    upgrade_async,
)
from bot.db.models import (
    AudioFeatures,
    Base,
    Feedback,
    Guild,
    ModelVersion,
    Prediction,
    QueueEntry,
    RetrainJob,
    Track,
    TrackSource,
)
from bot.db.store import Store, file_fingerprint, normalize_isrc

__all__ = [
    "AudioFeatures",
    "Base",
    "Feedback",
    "Guild",
    "InvalidRecordError",
    "ModelConflictError",
    "ModelVersion",
    "NotFoundError",
    "Prediction",
    "QueueEntry",
    "RetrainJob",
    "SchemaOutOfDateError",
    "StorageError",
    "Store",
    "Track",
    "TrackSource",
    "check_schema",
    "create_engine",
    "current_revision",
    "default_database_url",
    "downgrade",
    "file_fingerprint",
    "head_revision",
    "make_sessionmaker",
    "normalize_isrc",
    "upgrade",
    "upgrade_async",
]
