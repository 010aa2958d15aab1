"""Exceptions of the storage layer.

Every error raised by :mod:`bot.storage` derives from :class:`StorageError`, so the CLI and the bot
can catch one type and show its message.
"""

from __future__ import annotations


class StorageError(Exception):
    """Root of every error raised by :mod:`bot.storage`."""


class InvalidRecordError(StorageError, ValueError):
    """A value cannot be stored (unknown provider, quadrant, feature kind, ...)."""


class NotFoundError(StorageError, LookupError):
    """A row the operation depends on (a track, usually) does not exist."""


class ModelConflictError(StorageError):
    """A model version is already registered with a different artifact (sha256)."""


class SchemaOutOfDateError(StorageError):
    """The database schema is not at the revision this code needs.

    Parameters
    ----------
    current : str or None
        The database's revision (None: an empty database, no migration applied).
    head : str
        The revision the code needs (the newest migration).
    known : bool
        Whether ``current`` is a revision of this code's migrations; False when the database
        was migrated by newer code.
    """

    def __init__(self, current: str | None, head: str, *, known: bool = True) -> None:
        self.current = current
        self.head = head
        self.known = known
        if current is None:
            message = (f"the database is empty (no schema), the code needs {head}: "
                       "run `mer db upgrade`")
        elif known:
            message = (f"database schema is at {current}, the code needs {head}: "
                       "run `mer db upgrade`")
        else:
            message = (f"database schema is at {current}, which this code does not know "
                       f"(migrated by a newer version?); the code needs {head}: upgrade the "
                       f"code, or downgrade the database with that newer version")
        super().__init__(message)

