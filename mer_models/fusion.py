"""Late fusion: one weighted mean of several models' class probabilities.

The engine fuses per-window probabilities at serving time and ``train/`` fuses out-of-fold
clip probabilities when it chooses the weights; both call :func:`fuse`, so the weights in a
model card mean the same thing in both places.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from mer_models.errors import ParameterError


def fuse(probabilities: Sequence[NDArray[np.floating]],
         weights: Sequence[float]) -> NDArray[np.float64]:
    """Weighted mean of probability arrays.

    Parameters
    ----------
    probabilities : sequence of ndarray, each shape (..., n_classes)
        One array per model, broadcastable to a common shape (a clip-level ``(1, 4)``
        row fuses with per-window ``(n_windows, 4)`` rows).
    weights : sequence of float
        One non-negative weight per model; they need not sum to 1. When all are 0 the
        models count equally.

    Returns
    -------
    ndarray, float64
        ``sum(w_i * p_i) / sum(w_i)`` in the broadcast shape.

    Raises
    ------
    ParameterError
        No model, a count mismatch, or a negative or non-finite weight.
    """
    if not probabilities:
        raise ParameterError("fuse needs at least one model's probabilities")
    if len(probabilities) != len(weights):
        raise ParameterError(f"{len(probabilities)} probability arrays but {len(weights)} "
                             "weights")
    w = np.asarray(weights, dtype=np.float64)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ParameterError(f"fusion weights must be finite and >= 0, got {list(weights)}")
    if w.sum() == 0:
        w = np.ones_like(w)
    arrays = np.broadcast_arrays(*(np.asarray(p, dtype=np.float64) for p in probabilities))
    return np.einsum("m,m...->...", w, np.stack(arrays)) / w.sum()
