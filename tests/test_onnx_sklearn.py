"""The scikit-learn models served through onnxruntime: export, card, loading, parity, imports.

Every probability comparison is against the model's ``.skops`` artifact loaded with skops,
the reference: the ONNX conversion must agree within :data:`TOLERANCE` on a few hundred rows.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from numpy.typing import NDArray

from mer_models.audio import load_windows
from mer_models.card import ModelCard, find_cards, sha256_file
from mer_models.config import AnalysisConfig
from mer_models.engine import DEFAULT_MODELS_DIR, MoodEngine
from mer_models.ensemble import DescriptorEnsemble, load_skops
from mer_models.errors import ModelCardError
from mer_models.features import clip_descriptors, extract_features
from mer_models.fusion import fuse
from mer_models.model import ModelInputs
from mer_models.spotify import SPOTIFY_FEATURES, SpotifyFeatureModel, to_quadrant_probabilities
from tests.synth import SR, mood_clip
from train.export import export_sklearn_onnx, probe_rows, serving_estimator

#: Largest difference of class probabilities allowed between the ONNX and skops paths.
TOLERANCE = 1e-4
REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
SHIPPED_KINDS = ("ensemble", "musicnn", "spotify-ensemble")


def _max_difference(a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
    assert a.shape == b.shape
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _skops_only(folder: Path) -> Path:
    """``folder`` as it was before conversion: cards without ``onnx``, no .onnx of theirs."""
    for path in folder.glob("*.json"):
        card = ModelCard.load(path)
        if card.onnx is not None:
            (folder / card.onnx.artifact).unlink()
            card.model_copy(update={"onnx": None, "inputs": [], "outputs": []}).save(path)
    return folder


def _ensemble_card(folder: Path) -> Path:
    return next(folder.glob("mood-4q-ensemble-*.json"))


def _head(n_features: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, n_features)) * 3.0 + 1.0
    y = np.array([f"Q{1 + i % 4}" for i in range(80)])
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)


# --- export and card --------------------------------------------------------------------------


def test_saved_ensemble_lists_its_onnx_file_with_its_hash(tiny_models_dir: Path) -> None:
    card_path = _ensemble_card(tiny_models_dir)
    card = ModelCard.load(card_path)
    assert card.onnx is not None and card.onnx.artifact == "mood-4q-ensemble-test.onnx"
    onnx = tiny_models_dir / card.onnx.artifact
    assert card.onnx.sha256 == sha256_file(onnx)
    assert card.artifact_paths(card_path) == [tiny_models_dir / card.artifact, onnx]
    assert card.onnx.max_abs_difference is not None
    assert card.onnx.max_abs_difference < TOLERANCE
    assert [(s.name, s.shape) for s in card.inputs] == [("features", [None, 119])]
    assert [(s.name, s.shape) for s in card.outputs] == [("probabilities", [None, 4])]


def test_serving_estimator_leaves_out_smote(tiny_models_dir: Path) -> None:
    card_path = _ensemble_card(tiny_models_dir)
    card = ModelCard.load(card_path)
    model = load_skops(card.artifact_path(card_path), card)
    served = serving_estimator(model)
    assert [name for name, _ in served.steps] == ["scale", "pca", "stack"]
    assert type(served).__module__.startswith("sklearn.")
    rows = probe_rows(model, n=50)
    np.testing.assert_array_equal(served.predict_proba(rows), model.predict_proba(rows))


def test_a_model_skl2onnx_cannot_convert_is_saved_for_skops(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from mer_models.card import TrainingData
    from train.ensemble import save_ensemble

    rng = np.random.default_rng(0)
    x = np.abs(rng.standard_normal((40, 119)))
    model = make_pipeline(FunctionTransformer(np.log1p), _head(119)).fit(
        x, np.array([f"Q{1 + i % 4}" for i in range(40)]))
    with caplog.at_level(logging.WARNING):
        card_path = save_ensemble(model, tmp_path, version="x", analysis=AnalysisConfig(),
                                  training=TrainingData(dataset="random"), metrics={})
    assert ModelCard.load(card_path).onnx is None
    assert not list(tmp_path.glob("*.onnx"))
    assert "serving it with skops" in caplog.text
    assert DescriptorEnsemble(card_path).backend == "skops"


def test_convert_sklearn_command_converts_a_folder_in_place(tiny_models_dir: Path,
                                                            tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from train.__main__ import app

    folder = _skops_only(Path(shutil.copytree(tiny_models_dir, tmp_path / "models")))
    card_path = _ensemble_card(folder)
    before = ModelCard.load(card_path)
    result = CliRunner().invoke(app, ["convert-sklearn", "--models-dir", str(folder)])
    assert result.exit_code == 0, result.output
    after = ModelCard.load(card_path)
    assert after.onnx is not None and after.onnx.sha256 == sha256_file(folder / after.onnx.artifact)
    # The same model: name, version and the skops file's hash stay.
    assert (after.display_name, after.artifact, after.sha256) == (
        before.display_name, before.artifact, before.sha256)
    assert DescriptorEnsemble(card_path).backend == "onnxruntime"
    first = (folder / after.onnx.artifact).read_bytes()
    assert CliRunner().invoke(app, ["convert-sklearn", "--models-dir", str(folder)]).exit_code == 0
    assert (folder / after.onnx.artifact).read_bytes() == first  # reconverting changes nothing


# --- loading ----------------------------------------------------------------------------------


def test_tampered_onnx_file_is_refused(tiny_models_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_models_dir, tmp_path / "models"))
    onnx = next(folder.glob("mood-4q-ensemble-*.onnx"))
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(ModelCardError, match="sha256"):
        DescriptorEnsemble(_ensemble_card(folder))
    with pytest.raises(ModelCardError, match="sha256"):
        MoodEngine(folder)


def test_missing_onnx_file_falls_back_to_skops(tiny_models_dir: Path, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    # What a folder copied with only each card's .skops artifact looks like.
    folder = Path(shutil.copytree(tiny_models_dir, tmp_path / "models"))
    next(folder.glob("mood-4q-ensemble-*.onnx")).unlink()
    with caplog.at_level(logging.WARNING):
        model = DescriptorEnsemble(_ensemble_card(folder))
    assert model.backend == "skops"
    assert "mood-4q-ensemble-test.onnx is missing" in caplog.text


def test_onnx_file_of_other_classes_is_refused(tiny_models_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_models_dir, tmp_path / "models"))
    card_path = _ensemble_card(folder)
    card = ModelCard.load(card_path)
    assert card.onnx is not None
    onnx = folder / card.onnx.artifact
    model = load_skops(card.artifact_path(card_path), card)
    export_sklearn_onnx(model, onnx, classes=["Q2", "Q1", "Q3", "Q4"])
    card.model_copy(update={"onnx": card.onnx.model_copy(
        update={"sha256": sha256_file(onnx)})}).save(card_path)
    with pytest.raises(ModelCardError, match="classes"):
        DescriptorEnsemble(card_path)


# --- parity: tiny models ----------------------------------------------------------------------


def test_tiny_ensemble_onnx_matches_skops(tiny_models_dir: Path) -> None:
    card_path = _ensemble_card(tiny_models_dir)
    served = DescriptorEnsemble(card_path)
    assert served.backend == "onnxruntime"
    reference = load_skops(served.card.artifact_path(card_path), served.card)
    rows = probe_rows(reference, n=300, seed=1)
    difference = _max_difference(served.predict(rows), reference.predict_proba(rows))
    print(f"tiny ensemble: max |Δp| {difference:.2g} on {len(rows)} rows")
    assert difference < TOLERANCE


def test_tiny_musicnn_head_onnx_matches_skops(tmp_path: Path) -> None:
    from mer_models.musicnn_head import MusicnnHead
    from train.musicnn_head import save_head
    from train.pipeline import TRAINING_DATA

    head = _head(400)
    card = save_head(head, tmp_path, version="1", analysis=AnalysisConfig(),
                     training=TRAINING_DATA, metrics={},
                     layout={"networks": ["musicnn-msd-1"], "patches_per_window": 1})
    served = MusicnnHead(card, threads=1, prefer_gpu=False)
    assert served.backend == "onnxruntime"
    rows = probe_rows(head, n=300, seed=1)
    difference = _max_difference(served.predict(rows), head.predict_proba(rows))
    print(f"tiny musicnn head: max |Δp| {difference:.2g} on {len(rows)} rows")
    assert difference < TOLERANCE


def test_tiny_spotify_model_onnx_matches_skops(tmp_path: Path) -> None:
    from mer_models.card import TrainingData
    from train.ensemble import save_ensemble
    from train.seed_report import make_pipeline

    rng = np.random.default_rng(0)
    moods = np.array(["calm", "energetic", "happy", "sad"])
    y = moods[rng.integers(0, 4, 200)]
    x = rng.standard_normal((200, len(SPOTIFY_FEATURES))) + np.searchsorted(moods, y)[:, None]
    model = make_pipeline("stacking", n_trees=5).fit(x, y)
    card = save_ensemble(model, tmp_path, version="t", analysis=AnalysisConfig(),
                         training=TrainingData(dataset="random"), metrics={},
                         name="mood-spotify-ensemble", feature_names=SPOTIFY_FEATURES,
                         kind="spotify-ensemble")
    served = SpotifyFeatureModel(card)
    rows = probe_rows(model, n=300, seed=1)
    got = np.array([[served.predict(dict(zip(SPOTIFY_FEATURES, row, strict=True)))[q]
                     for q in ("Q1", "Q2", "Q3", "Q4")] for row in rows])
    expected = to_quadrant_probabilities(model.predict_proba(rows), model.classes_)
    difference = _max_difference(got, expected)
    print(f"tiny Spotify model: max |Δp| {difference:.2g} on {len(rows)} rows")
    assert difference < TOLERANCE


# --- parity: shipped models -------------------------------------------------------------------


def _shipped_rows(kind: str, reference: Any) -> tuple[NDArray[np.float64], str]:
    """Cached 4Q inputs of the model when present, else rows drawn from its input scaler."""
    from train.data import serving_windows

    if kind == "ensemble":
        for path in sorted((CACHE / "features").glob("4q-*.npz")):
            with np.load(path) as cached:
                windows = cached["descriptors"]
            index = serving_windows(windows.shape[1], AnalysisConfig().n_windows)
            rows = np.stack([clip_descriptors(d[index]) for d in windows])
            return np.nan_to_num(rows).astype(np.float64), f"{path.name} (4Q clips)"
    if kind == "musicnn":
        from train.musicnn_head import layout_embeddings

        card = ModelCard.load(find_cards(DEFAULT_MODELS_DIR)["musicnn"])
        for path in sorted((CACHE / "musicnn").glob("4q-*.npz")):
            with np.load(path) as cached:
                rows = layout_embeddings(dict(cached), card.architecture["embedding"],
                                         AnalysisConfig().n_windows)
            return rows.astype(np.float64), f"{path.name} (4Q clips)"
    return probe_rows(reference, n=400, seed=1), "rows drawn from the input scaler"


@pytest.mark.skipif(not find_cards(DEFAULT_MODELS_DIR), reason="no shipped models")
@pytest.mark.parametrize("kind", SHIPPED_KINDS)
def test_shipped_onnx_matches_skops(kind: str) -> None:
    from mer_models.musicnn_head import MusicnnHead

    card_path = find_cards(DEFAULT_MODELS_DIR)[kind]
    card = ModelCard.load(card_path)
    assert card.onnx is not None, f"{card_path.name} lists no ONNX conversion"
    reference = load_skops(card.verify(card_path), card)
    served = (MusicnnHead(card_path, threads=1, prefer_gpu=False) if kind == "musicnn"
              else DescriptorEnsemble(card_path))
    assert served.backend == "onnxruntime"
    rows, source = _shipped_rows(kind, reference)
    difference = _max_difference(served.predict(rows), reference.predict_proba(rows))
    print(f"{card.display_name}: max |Δp| {difference:.2g} on {len(rows)} rows of {source}")
    assert len(rows) >= 300
    assert difference < TOLERANCE


@pytest.mark.skipif(not find_cards(DEFAULT_MODELS_DIR), reason="no shipped models")
def test_shipped_engine_fuses_like_the_skops_path(tmp_path: Path) -> None:
    skops_dir = _skops_only(Path(shutil.copytree(DEFAULT_MODELS_DIR, tmp_path / "weights")))
    served = MoodEngine(threads=1, prefer_gpu=False)
    reference = MoodEngine(skops_dir, threads=1, prefer_gpu=False)
    assert [getattr(m, "backend", "onnx") for m in served.models] == [
        "onnx", "onnxruntime", "onnxruntime"]
    assert [getattr(m, "backend", "onnx") for m in reference.models] == ["onnx", "skops", "skops"]
    config = served.config
    worst = 0.0
    for i, quadrant in enumerate(("Q1", "Q2", "Q3", "Q4")):
        path = tmp_path / f"{quadrant}.wav"
        sf.write(path, mood_clip(quadrant, seconds=10.0, seed=50 + i), SR)
        windows = load_windows(path, config).windows
        features = extract_features(windows, config)
        assert served.embedder is not None
        wide = load_windows(path, served.embedder.analysis(config)).windows
        inputs = ModelInputs(logmel=features.logmel,
                             descriptors=clip_descriptors(features.descriptors),
                             embedding=served.embedder.embed(wide, config.sample_rate))
        parts = [[m.quadrant_probabilities(inputs) for m in engine.models]
                 for engine in (served, reference)]
        for got, expected in zip(*parts, strict=True):
            worst = max(worst, _max_difference(got, expected))
        fused = [fuse(p, [m.card.fusion_weight for m in served.models]) for p in parts]
        worst = max(worst, _max_difference(*fused))
        assert served.classify(path).quadrant == reference.classify(path).quadrant
    print(f"shipped engine: max |Δp| {worst:.2g} over 4 clips (per model and fused)")
    assert worst < TOLERANCE


# --- what classifying imports ----------------------------------------------------------------

_CLASSIFY = textwrap.dedent("""
    import json, sys
    from mer_models.card import find_cards
    from mer_models.engine import DEFAULT_MODELS_DIR, MoodEngine
    from mer_models.spotify import SPOTIFY_FEATURES, SpotifyFeatureModel

    engine = MoodEngine(threads=1, prefer_gpu=False)
    engine.classify(sys.argv[1])
    SpotifyFeatureModel(find_cards(DEFAULT_MODELS_DIR)["spotify-ensemble"]).predict(
        dict.fromkeys(SPOTIFY_FEATURES, 0.5))
    print(json.dumps(sorted(name for name in sys.modules
                            if name.split(".")[0] in ("sklearn", "skops", "imblearn"))))
""")


@pytest.fixture(scope="module")
def imported_after_classifying(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Modules of scikit-learn, skops and imblearn loaded by a fresh process that classified
    a file with the shipped models and ran the Spotify model."""
    path = tmp_path_factory.mktemp("clip") / "q1.wav"
    sf.write(path, mood_clip("Q1", seconds=8.0, seed=7), SR)
    run = subprocess.run([sys.executable, "-c", _CLASSIFY, str(path)], cwd=REPO,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    modules: list[str] = json.loads(run.stdout.strip().splitlines()[-1])
    return modules


@pytest.mark.skipif(not find_cards(DEFAULT_MODELS_DIR), reason="no shipped models")
def test_classifying_imports_neither_skops_nor_the_models_sklearn(
        imported_after_classifying: list[str]) -> None:
    loaded = set(imported_after_classifying)
    assert not {"skops", "imblearn"} & loaded
    # Estimators of the shipped models that nothing else loads (librosa.decompose pulls in
    # sklearn.decomposition and, through librosa.segment, sklearn.cluster, neighbors, tree).
    assert not {"sklearn.ensemble", "sklearn.pipeline", "sklearn.calibration"} & loaded


@pytest.mark.skipif(not find_cards(DEFAULT_MODELS_DIR), reason="no shipped models")
def test_classifying_does_not_import_sklearn(imported_after_classifying: list[str]) -> None:
    assert "sklearn" not in imported_after_classifying
