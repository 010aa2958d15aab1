"""The optional Spotify-audio-feature model and its mapping into Russell quadrants.

Spotify stopped serving audio features to new applications on 2024-11-27; this model is for
users who still hold them. It was trained on the seed report's table (playlist moods sad,
calm, happy, energetic; see docs/REPRODUCTION.md) and its probabilities map into quadrants:

    P(Q1) = P(happy) + P(energetic), P(Q2) = 0, P(Q3) = P(sad), P(Q4) = P(calm)

No seed mood is negative-valence and high-arousal, so this model never predicts Q2 (tense).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from mer_models.ensemble import DescriptorEnsemble
from mer_models.errors import ParameterError
from mer_models.model import ModelInputs, required
from mer_models.moods import QUADRANTS, Quadrant

# duration_ms is left out: a track's length is a property of the release and of how each
# mood playlist was curated, not of the emotion heard, so it would let the model learn the
# playlist source (happy tracks average 223 s, calm ones 186 s in this table). It is also
# meaningless for the engine's 30-second previews.
SPOTIFY_FEATURES: Final[tuple[str, ...]] = (
    "danceability",
    "energy",
    "key",
    "loudness",
    "mode",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
    "time_signature",
)
SEED_MOODS: Final[tuple[str, ...]] = ("sad", "calm", "happy", "energetic")

# Russell quadrant of each seed mood. Happy and energetic are both positive valence and high
# arousal (Q1), calm is positive valence and low arousal (Q4), sad is negative valence and low
# arousal (Q3). No seed mood is negative valence with high arousal, so the Spotify model gives
# Q2 (tense / angry) probability 0 and can never predict it:
# P(Q1) = P(happy) + P(energetic), P(Q2) = 0, P(Q3) = P(sad), P(Q4) = P(calm).
SEED_TO_QUADRANT: Final[dict[str, Quadrant]] = {
    "happy": Quadrant.Q1,
    "energetic": Quadrant.Q1,
    "sad": Quadrant.Q3,
    "calm": Quadrant.Q4,
}


def to_quadrant_probabilities(
    proba: NDArray[np.floating], classes: Sequence[str] | NDArray[np.str_]
) -> NDArray[np.float64]:
    """Map seed-mood probabilities to Russell-quadrant probabilities.

    Parameters
    ----------
    proba : ndarray, shape (n, k)
        Probabilities over ``classes`` (each row summing to 1).
    classes : sequence of str, length k
        Seed moods labelling the columns of ``proba`` (a model's ``classes_``).

    Returns
    -------
    ndarray of float64, shape (n, 4)
        Probabilities of Q1..Q4 following :data:`SEED_TO_QUADRANT`; the Q2 column is 0.

    Raises
    ------
    ValueError
        ``proba`` is not 2-D with one column per class, holds non-finite values, or a class
        is not a seed mood.
    """
    proba = np.asarray(proba, dtype=np.float64)
    names = [str(c) for c in classes]
    if proba.ndim != 2 or proba.shape[1] != len(names):
        raise ValueError(f"proba has shape {proba.shape}; expected (n, {len(names)})")
    if not np.isfinite(proba).all():
        raise ValueError("proba holds non-finite values")
    unknown = [c for c in names if c not in SEED_TO_QUADRANT]
    if unknown:
        raise ValueError(f"class(es) {unknown} have no quadrant; expected {list(SEED_MOODS)}")
    out = np.zeros((proba.shape[0], len(QUADRANTS)), dtype=np.float64)
    for column, name in enumerate(names):
        out[:, QUADRANTS.index(SEED_TO_QUADRANT[name])] += proba[:, column]
    return out


class SpotifyFeatureModel:
    """Quadrant probabilities from Spotify audio features.

    Parameters
    ----------
    card_path : path
        Card of kind ``spotify-ensemble``; its artifacts lie beside it (the ONNX conversion
        serves when the card lists it, else the skops file).
    """

    def __init__(self, card_path: str | Path) -> None:
        self._ensemble = DescriptorEnsemble(card_path, feature_names=SPOTIFY_FEATURES)
        self.card = self._ensemble.card

    def predict(self, features: Mapping[str, float]) -> dict[str, float]:
        """Quadrant probabilities of one track.

        Parameters
        ----------
        features : mapping
            Spotify's audio features by name (at least :data:`SPOTIFY_FEATURES`).

        Raises
        ------
        ParameterError
            A feature is missing or not a finite number.
        """
        missing = [name for name in SPOTIFY_FEATURES if name not in features]
        if missing:
            raise ParameterError(f"missing Spotify audio features: {', '.join(missing)}")
        try:
            row = np.array([[float(features[name]) for name in SPOTIFY_FEATURES]])
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"Spotify audio features must be numbers: {exc}") from exc
        if not np.isfinite(row).all():
            raise ParameterError("Spotify audio features must be finite numbers")
        proba = to_quadrant_probabilities(self._ensemble.predict(row), self.card.classes)[0]
        return {q.value: float(p) for q, p in zip(QUADRANTS, proba, strict=True)}

    def quadrant_probabilities(self, inputs: ModelInputs) -> NDArray[np.float64]:
        """:meth:`predict` on the track's Spotify features, shape (1, 4)."""
        probabilities = self.predict(required(inputs.spotify, "Spotify audio features",
                                              self.card))
        return np.array([[probabilities[q.value] for q in QUADRANTS]])
