"""Music emotion recognition engine: audio in, Russell-quadrant mood out.

Importing the package is cheap: the heavy modules (onnxruntime, soxr, scipy.ndimage) load on
first use of :class:`MoodEngine`. Serving imports neither librosa nor scikit-learn: the
features' librosa computations live in :mod:`mer_models.dsp`, the scikit-learn models run
from ONNX.
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
