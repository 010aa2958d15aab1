"""The interface every mood model implements, and the inputs the engine hands it.

The engine computes each kind of input once per clip and holds a list of models; a model
takes what it needs from :class:`ModelInputs` and answers quadrant probabilities. A new model
(another network, a head on an embedding) plugs in by implementing :class:`MoodModel`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from mer_models.card import ModelCard
from mer_models.errors import ParameterError

_T = TypeVar("_T")


@dataclass(frozen=True)
class ModelInputs:
    """What the engine extracted from one clip.

    Attributes
    ----------
    logmel : ndarray, shape (n_windows, n_mels, frames), or None
        Log-mel windows (:func:`mer_models.features.extract_features`).
    descriptors : ndarray, shape (n_descriptors,), or None
        The clip's descriptor vector (:func:`mer_models.features.clip_descriptors`).
    embedding : ndarray, shape (n_values,), or None
        The clip's pretrained-network embedding (:class:`mer_models.musicnn_head.MusicnnEmbedder`).
    spotify : mapping or None
        Spotify's audio features of the track, for users who still have them.
    """

    logmel: NDArray[np.float32] | None = None
    descriptors: NDArray[np.float32] | None = None
    embedding: NDArray[np.float32] | None = None
    spotify: Mapping[str, float] | None = None


def required(value: _T | None, name: str, card: ModelCard) -> _T:
    """``value``, or a :class:`ParameterError` naming the model that needed it."""
    if value is None:
        raise ParameterError(f"{card.display_name} needs {name}, which this clip lacks")
    return value


@runtime_checkable
class MoodModel(Protocol):
    """A model of the fusion: its card, and quadrant probabilities from a clip's inputs."""

    card: ModelCard

    def quadrant_probabilities(self, inputs: ModelInputs) -> NDArray[np.float64]:
        """Probabilities of Q1..Q4, shape (n_windows, 4) or (1, 4) for a clip-level model."""
        ...
