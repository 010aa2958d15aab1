"""The models shipped in mer_models/weights load, verify and answer what they should."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mer_models.card import find_cards
from mer_models.engine import DEFAULT_MODELS_DIR, MoodEngine
from mer_models.spotify import SPOTIFY_FEATURES, SpotifyFeatureModel
from tests.synth import SR, mood_clip

pytestmark = pytest.mark.skipif(not find_cards(DEFAULT_MODELS_DIR),
                                reason="no shipped models in mer_models/weights")


@pytest.fixture(scope="module")
def engine() -> MoodEngine:
    return MoodEngine(threads=1)


def test_shipped_engine_loads_with_its_cards(engine: MoodEngine) -> None:
    assert set(engine.versions) >= {"cldnn", "ensemble"}
    assert sum(card.fusion_weight for card in engine.cards) == pytest.approx(1.0)
    for card in engine.cards:
        assert card.training.n_clips == 720 and card.metrics["cv_macro_f1_mean"] > 0.6


def test_known_inputs_land_where_they_belong(engine: MoodEngine, tmp_path: Path) -> None:
    # Harsh, dense audio is tense (Q2) by a clear margin; white noise is high-arousal; a slow,
    # soft major-key clip is low-arousal. A pipeline with shuffled features, swapped classes or
    # wrong preprocessing moves these (measured with the three shipped models: tense clip
    # P(Q2) 0.46 against 0.24 for the runner-up; noise arousal 0.57; calm arousal 0.08).
    tense = tmp_path / "tense.wav"
    sf.write(tense, mood_clip("Q2", seconds=10.0, seed=1), SR)
    noise = tmp_path / "noise.wav"
    rng = np.random.default_rng(0)
    sf.write(noise, (0.5 * rng.standard_normal(10 * SR)).clip(-1, 1).astype(np.float32), SR)
    calm = tmp_path / "calm.wav"
    sf.write(calm, mood_clip("Q4", seconds=10.0, seed=1), SR)
    result = engine.classify(tense)
    runner_up = sorted(result.probabilities.values())[-2]
    assert result.quadrant.value == "Q2" and result.confidence > 1.5 * runner_up, (
        result.probabilities)
    assert engine.classify(noise).arousal > 0.5
    assert engine.classify(calm).arousal < 0.2


def test_shipped_spotify_model_loads() -> None:
    model = SpotifyFeatureModel(find_cards(DEFAULT_MODELS_DIR)["spotify-ensemble"])
    loud_happy = dict.fromkeys(SPOTIFY_FEATURES, 0.5) | {"energy": 0.9, "valence": 0.9,
                                                         "loudness": -5.0, "tempo": 128.0}
    probabilities = model.predict(loud_happy)
    assert probabilities["Q2"] == 0.0 and sum(probabilities.values()) == pytest.approx(1.0)
    assert probabilities["Q1"] > 0.5
