"""MoodEngine end to end with tiny models trained on synthetic clips."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mer_models.card import ModelCard
from mer_models.config import AnalysisConfig
from mer_models.engine import MoodEngine
from mer_models.ensemble import TRUSTED_TYPES
from mer_models.errors import (
    AudioDecodeError,
    AudioNotFoundError,
    ModelCardError,
    ModelNotFoundError,
)
from mer_models.result import MoodResult


@pytest.fixture(scope="module")
def engine(tiny_models_dir: Path) -> MoodEngine:
    return MoodEngine(tiny_models_dir, threads=1)


def test_result_is_consistent(engine: MoodEngine, mood_files: dict[str, Path]) -> None:
    result = engine.classify(mood_files["Q1"])
    p = result.probabilities
    assert list(p) == ["Q1", "Q2", "Q3", "Q4"]
    assert sum(p.values()) == pytest.approx(1.0, abs=1e-3)
    assert result.valence == pytest.approx(p["Q1"] + p["Q4"])
    assert result.arousal == pytest.approx(p["Q1"] + p["Q2"])
    assert result.confidence == max(p.values())
    assert result.mood == {"Q1": "happy", "Q2": "tense", "Q3": "sad", "Q4": "calm"}[
        result.quadrant.value]
    assert len(result.windows) == engine.config.n_windows
    assert [w.start for w in result.windows] == sorted(w.start for w in result.windows)
    assert result.windows[-1].end == pytest.approx(8.0, abs=0.01)
    assert result.models == {"cldnn": "mood-4q-cldnn-test", "ensemble": "mood-4q-ensemble-test"}
    assert result.weights == {c.kind: c.fusion_weight for c in engine.cards} == engine.weights
    assert {"decode", "features", "cldnn", "ensemble", "total"} <= set(result.timings_ms)


def test_tiny_models_learned_the_synthetic_moods(engine: MoodEngine,
                                                 mood_files: dict[str, Path]) -> None:
    # Unseen seeds of the training recipe: a broken pipeline (shuffled windows, wrong
    # features, mismatched preprocessing) would not get these right.
    predicted = {q: engine.classify(path).quadrant.value for q, path in mood_files.items()}
    assert sum(predicted[q] == q for q in predicted) >= 3, predicted


def test_clip_probability_is_mean_of_timeline(engine: MoodEngine,
                                              mood_files: dict[str, Path]) -> None:
    result = engine.classify(mood_files["Q3"])
    timeline = np.array([[w.probabilities[q] for q in ["Q1", "Q2", "Q3", "Q4"]]
                         for w in result.windows])
    np.testing.assert_allclose(timeline.mean(axis=0), list(result.probabilities.values()),
                               atol=1e-3)


def test_bytes_and_path_agree(engine: MoodEngine, mood_files: dict[str, Path]) -> None:
    by_path = engine.classify(mood_files["Q2"])
    by_bytes = engine.classify(mood_files["Q2"].read_bytes(), name="clip")
    assert by_bytes.input == "clip"
    assert by_bytes.probabilities == by_path.probabilities


def test_fusion_follows_card_weights(tiny_models_dir: Path, tmp_path: Path,
                                     mood_files: dict[str, Path]) -> None:
    alone = {}
    for kind in ("cldnn", "ensemble"):
        folder = tmp_path / kind
        folder.mkdir()
        for path in tiny_models_dir.glob(f"mood-4q-{kind}-*"):
            shutil.copy(path, folder)
        single = MoodEngine(folder, threads=1)
        assert list(single.versions) == [kind]
        alone[kind] = np.array(list(single.classify(mood_files["Q4"]).probabilities.values()))
    assert np.abs(alone["cldnn"] - alone["ensemble"]).max() > 0.05  # else the test says nothing
    weighted = tmp_path / "weighted"
    shutil.copytree(tiny_models_dir, weighted)
    for card_path, weight in (("mood-4q-cldnn-test.json", 0.8),
                              ("mood-4q-ensemble-test.json", 0.2)):
        card = ModelCard.load(weighted / card_path)
        card.fusion_weight = weight
        card.save(weighted / card_path)
    fused = np.array(list(MoodEngine(weighted, threads=1).classify(
        mood_files["Q4"]).probabilities.values()))
    np.testing.assert_allclose(fused, 0.8 * alone["cldnn"] + 0.2 * alone["ensemble"],
                               atol=2e-4)
    swapped = 0.2 * alone["cldnn"] + 0.8 * alone["ensemble"]
    assert np.abs(fused - swapped).max() > 0.02


def test_classify_many_in_processes_matches_sequential(
        engine: MoodEngine, mood_files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all" * 100)
    sources = [str(mood_files["Q1"]), str(bad), str(mood_files["Q3"]),
               str(tmp_path / "missing.wav")]
    parallel = engine.classify_many(sources, workers=2)
    sequential = engine.classify_many(sources, workers=1)
    assert isinstance(parallel[1], AudioDecodeError) and isinstance(sequential[1],
                                                                    AudioDecodeError)
    assert isinstance(parallel[3], AudioNotFoundError)
    for a, b in zip(parallel, sequential, strict=True):
        if isinstance(a, MoodResult):
            assert isinstance(b, MoodResult)
            assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)


def test_no_models_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="python -m train all"):
        MoodEngine(tmp_path)


def test_engine_refuses_other_preprocessing(tiny_models_dir: Path) -> None:
    with pytest.raises(ModelCardError, match="n_mels"):
        MoodEngine(tiny_models_dir, config=AnalysisConfig(n_mels=64))


def test_engine_refuses_tampered_artifact(tiny_models_dir: Path, tmp_path: Path) -> None:
    for path in tiny_models_dir.iterdir():
        shutil.copy(path, tmp_path)
    onnx = next(tmp_path.glob("*.onnx"))
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(ModelCardError, match="sha256"):
        MoodEngine(tmp_path)


def test_ensemble_with_untrusted_types_is_refused(tiny_models_dir: Path, tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from train.ensemble import save_ensemble

    card = ModelCard.load(next(tiny_models_dir.glob("mood-4q-ensemble-*.json")))
    trusted = sio.load(tiny_models_dir / card.artifact, trusted=list(TRUSTED_TYPES))
    # A function of the os module hidden in a pipeline: exactly what skops must refuse.
    evil = make_pipeline(FunctionTransformer(np.asarray), trusted)
    evil.steps[0][1].func = shutil.rmtree  # type: ignore[attr-defined]
    save_ensemble(evil, tmp_path, version="evil", analysis=AnalysisConfig(),
                  training=card.training, metrics={})
    with pytest.raises(ModelCardError, match="trusted"):
        MoodEngine(tmp_path)
