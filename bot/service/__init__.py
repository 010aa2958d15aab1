"""The one API of every front-end (CLI, Discord bot, MPD player).

Front-ends import from here and nothing below it (``bot.sources``, ``bot.storage``,
``bot.recommend``, ``mer_models``); ``tests/test_architecture.py`` checks it. Importing this
package is cheap: :class:`MoodService` and friends load on first use.

- :class:`MoodService` (``mood``): create, classify with single flight, scan a library.
- ``library``: file walks, the identity a local file is stored under, :class:`ScanReport`.
- ``records``: engine results and source metadata to and from database rows.
- ``database``: open, migrate and describe the database for front-ends.
- :data:`Base` and :func:`utcnow`: the declarative base on which a front-end declares its own
  tables (Discord's guilds and queues), so one migration history covers every table.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bot.service.errors import ServiceError, redact
from bot.service.player import Player
from bot.storage.models import Base, utcnow

if TYPE_CHECKING:
    from bot.service.library import ScanReport
    from bot.service.mood import MoodService, TrackMood
    from mer_models.result import MoodResult

__all__ = ["Base", "MoodResult", "MoodService", "Player", "ScanReport", "ServiceError",
           "TrackMood", "redact", "utcnow"]
_LAZY = {"MoodService": "bot.service.mood", "TrackMood": "bot.service.mood",
         "ScanReport": "bot.service.library", "MoodResult": "mer_models.result"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bot.service' has no attribute {name!r}")
