"""The mood scheme: Russell quadrants, their user-facing names, valence and arousal."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

import numpy as np
from numpy.typing import NDArray


class Quadrant(StrEnum):
    """Russell quadrants as labelled in the 4Q dataset (Panda et al., 2018)."""

    Q1 = "Q1"  # positive valence, high arousal
    Q2 = "Q2"  # negative valence, high arousal
    Q3 = "Q3"  # negative valence, low arousal
    Q4 = "Q4"  # positive valence, low arousal

    @property
    def mood(self) -> str:
        """User-facing mood name of the quadrant."""
        return MOOD_NAMES[self]


QUADRANTS: Final[tuple[Quadrant, ...]] = (Quadrant.Q1, Quadrant.Q2, Quadrant.Q3, Quadrant.Q4)
MOOD_NAMES: Final[dict[Quadrant, str]] = {
    Quadrant.Q1: "happy",
    Quadrant.Q2: "tense",
    Quadrant.Q3: "sad",
    Quadrant.Q4: "calm",
}
MOOD_DESCRIPTIONS: Final[dict[Quadrant, str]] = {
    Quadrant.Q1: "happy / energetic",
    Quadrant.Q2: "tense / angry",
    Quadrant.Q3: "sad",
    Quadrant.Q4: "calm",
}


def valence(probabilities: NDArray[np.floating]) -> NDArray[np.floating]:
    """Valence in [0, 1]: ``P(Q1) + P(Q4)``.

    Parameters
    ----------
    probabilities : ndarray, shape (..., 4)
        Quadrant probabilities in the order Q1..Q4.
    """
    return probabilities[..., 0] + probabilities[..., 3]


def arousal(probabilities: NDArray[np.floating]) -> NDArray[np.floating]:
    """Arousal in [0, 1]: ``P(Q1) + P(Q2)``.

    Parameters
    ----------
    probabilities : ndarray, shape (..., 4)
        Quadrant probabilities in the order Q1..Q4.
    """
    return probabilities[..., 0] + probabilities[..., 1]
