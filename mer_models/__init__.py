"""Music emotion recognition engine: audio in, Russell-quadrant mood out.

Importing the package is cheap: the heavy modules (librosa, onnxruntime, scikit-learn) load
on first use of :class:`MoodEngine`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mer_models.config import AnalysisConfig
    from mer_models.engine import MoodEngine
    from mer_models.result import MoodResult

__all__ = ["AnalysisConfig", "MoodEngine", "MoodResult"]
_LAZY = {"AnalysisConfig": "mer_models.config", "MoodEngine": "mer_models.engine",
         "MoodResult": "mer_models.result"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mer_models' has no attribute {name!r}")
