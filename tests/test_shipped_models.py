"""The models shipped in mer_models/weights load, verify and answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from mer_models.card import find_cards
from mer_models.engine import DEFAULT_MODELS_DIR, MoodEngine
from mer_models.spotify import SPOTIFY_FEATURES, SpotifyFeatureModel

pytestmark = pytest.mark.skipif(not find_cards(DEFAULT_MODELS_DIR),
                                reason="no shipped models in mer_models/weights")


def test_shipped_engine_loads_and_classifies(mood_files: dict[str, Path]) -> None:
    engine = MoodEngine(threads=1)
    assert engine.cldnn is not None and engine.ensemble is not None
    assert sum(card.fusion_weight for card in engine.cards) == pytest.approx(1.0)
    for card in engine.cards:
        assert card.training.n_clips == 720 and card.metrics["cv_macro_f1_mean"] > 0.5
    result = engine.classify(mood_files["Q1"])
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-3)


def test_shipped_spotify_model_loads() -> None:
    model = SpotifyFeatureModel(find_cards(DEFAULT_MODELS_DIR)["spotify-ensemble"])
    loud_happy = dict.fromkeys(SPOTIFY_FEATURES, 0.5) | {"energy": 0.9, "valence": 0.9,
                                                         "loudness": -5.0, "tempo": 128.0}
    probabilities = model.predict(loud_happy)
    assert probabilities["Q2"] == 0.0 and sum(probabilities.values()) == pytest.approx(1.0)
