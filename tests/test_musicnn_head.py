"""The third fused model: the musicnn embedding in the engine, and the head on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mer_models.audio import load_windows
from mer_models.card import ModelCard
from mer_models.config import AnalysisConfig
from mer_models.engine import DEFAULT_MODELS_DIR, MoodEngine
from mer_models.errors import ModelCardError, ModelNotFoundError
from mer_models.model import ModelInputs
from mer_models.musicnn import OnnxMusicnn, musicnn_patches
from mer_models.musicnn_head import MusicnnEmbedder, MusicnnHead
from tests.synth import SR, mood_clip
from train.musicnn_embed import CACHE_PATCHES, CACHE_WINDOWS, clip_embeddings
from train.musicnn_head import save_head
from train.pipeline import TRAINING_DATA

LAYOUT = {"networks": ["musicnn-msd-1"], "patches_per_window": 1, "head": "logreg"}
#: The shipped layout's shape: both networks, 2 patches on each of 5 windows.
WIDE = {"networks": ["musicnn-msd-1", "musicnn-mtt-1"], "patches_per_window": 2, "windows": 5,
        "head": "logreg"}


@pytest.fixture(scope="module")
def msd() -> OnnxMusicnn:
    return OnnxMusicnn(DEFAULT_MODELS_DIR / "musicnn-msd-1.json", threads=1, prefer_gpu=False)


@pytest.fixture(scope="module")
def mtt() -> OnnxMusicnn:
    return OnnxMusicnn(DEFAULT_MODELS_DIR / "musicnn-mtt-1.json", threads=1, prefer_gpu=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "q1.wav"
    sf.write(path, mood_clip("Q1", seconds=30.0, seed=3), SR)
    return path


def _head(n_features: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """A fitted head on random vectors: what matters here is loading and plumbing."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((40, n_features))
    y = np.array([f"Q{1 + i % 4}" for i in range(40)])
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(x, y)


def _save(model, folder: Path, layout: dict = LAYOUT) -> Path:  # type: ignore[no-untyped-def,type-arg]
    return save_head(model, folder, version="1", analysis=AnalysisConfig(),
                     training=TRAINING_DATA, layout=layout, metrics={})


def test_serving_embedding_equals_the_training_layout(msd: OnnxMusicnn, clip: Path) -> None:
    # Serving: the engine's 3 windows, one centred patch each. Training: the cache's 5 windows
    # of 3 patches, from which clip_embeddings picks the serving subset. Same audio in, the
    # same embedding out, or the shipped head would see other inputs than it was trained on.
    config = AnalysisConfig()
    served = MusicnnEmbedder([msd], 1).embed(load_windows(clip, config).windows,
                                             config.sample_rate)
    cached = load_windows(clip, config.with_windows(CACHE_WINDOWS)).windows
    patches = musicnn_patches(cached, sample_rate=config.sample_rate,
                              patches_per_window=CACHE_PATCHES).patches
    trained = clip_embeddings(msd.penultimate(patches)[None], config.n_windows, 1)[0]
    assert served.shape == (400,)
    np.testing.assert_allclose(served, trained, atol=1e-4)


def test_wide_serving_embedding_equals_the_training_layout(msd: OnnxMusicnn, mtt: OnnxMusicnn,
                                                          clip: Path) -> None:
    # The shipped layout: 5 windows (the 3 serving ones and the 2 between), 2 patches each,
    # MSD then MTT; training pools the same patches out of the cache (train.musicnn_head).
    from train.musicnn_head import layout_embeddings

    config = AnalysisConfig()
    embedder = MusicnnEmbedder([msd, mtt], 2, windows=5)
    assert embedder.analysis(config).n_windows == 5 and embedder.size == 800
    served = embedder.embed(load_windows(clip, embedder.analysis(config)).windows,
                            config.sample_rate)
    cached = load_windows(clip, config.with_windows(CACHE_WINDOWS)).windows
    patches = musicnn_patches(cached, sample_rate=config.sample_rate,
                              patches_per_window=CACHE_PATCHES).patches
    cache = {"msd": msd.penultimate(patches)[None], "mtt": mtt.penultimate(patches)[None]}
    trained = layout_embeddings(cache, WIDE, config.n_windows)[0]
    assert served.shape == (800,)
    np.testing.assert_allclose(served, trained, atol=1e-4)


@pytest.mark.parametrize("n_windows", [3, 4])
def test_engine_cuts_a_wide_embedding_and_keeps_its_own_windows(
        tmp_path: Path, clip: Path, n_windows: int) -> None:
    # 3 windows are among the embedding's 5 (one decode); 4 are not (two decodes). Either way
    # the other models and the timeline see the engine's windows, the head its 5.
    from mer_models.features import DESCRIPTOR_NAMES, clip_descriptors, extract_features

    head = _head(800)
    card = ModelCard.load(_save(head, tmp_path, WIDE))
    assert card.architecture["embedding"]["windows"] == 5
    config = AnalysisConfig(n_windows=n_windows)
    engine = MoodEngine(tmp_path, config=config, threads=1, prefer_gpu=False)
    result = engine.classify(clip)
    own = load_windows(clip, config)
    assert [w.start for w in result.windows] == pytest.approx(own.starts.tolist(), abs=1e-3)
    descriptors = clip_descriptors(extract_features(own.windows, config).descriptors)
    np.testing.assert_allclose([result.descriptors[n] for n in DESCRIPTOR_NAMES], descriptors,
                               rtol=1e-5, atol=1e-6)
    assert engine.embedder is not None
    wide = load_windows(clip, config.with_windows(5)).windows
    np.testing.assert_allclose(result.embedding or [],
                               engine.embedder.embed(wide, config.sample_rate), atol=1e-5)
    expected = head.predict_proba(np.array([result.embedding]))[0]
    np.testing.assert_allclose(list(result.probabilities.values()), expected, atol=1e-3)


@pytest.mark.parametrize("windows", [0, -5, "5", 2.5, True])
def test_head_card_with_bad_windows_is_refused(tmp_path: Path, windows: object) -> None:
    card_path = _save(_head(400), tmp_path)
    card = ModelCard.load(card_path)
    card.architecture["embedding"]["windows"] = windows
    card.save(card_path)
    with pytest.raises(ModelCardError, match="positive"):
        MusicnnHead(card_path, threads=1, prefer_gpu=False)


def test_engine_fuses_the_head_and_returns_the_embedding(tmp_path: Path, clip: Path) -> None:
    head = _head(400)
    _save(head, tmp_path)
    engine = MoodEngine(tmp_path, threads=1, prefer_gpu=False)
    assert engine.versions == {"musicnn": "mood-4q-musicnn-1"}
    result = engine.classify(clip)
    assert result.embedding is not None and len(result.embedding) == 400
    assert engine.embedder is not None
    expected = head.predict_proba(np.array([result.embedding]))[0]
    np.testing.assert_allclose(list(result.probabilities.values()), expected, atol=1e-3)
    assert {"embedding", "musicnn"} <= set(result.timings_ms)
    assert "embedding" not in result.to_json()  # 400 floats are not for the terminal


def test_head_needs_the_embedding(tmp_path: Path) -> None:
    model = MusicnnHead(_save(_head(400), tmp_path), threads=1, prefer_gpu=False)
    with pytest.raises(Exception, match="needs the musicnn embedding"):
        model.quadrant_probabilities(ModelInputs())


def test_head_of_another_embedding_size_is_refused(tmp_path: Path) -> None:
    card = _save(_head(800), tmp_path)
    with pytest.raises(ModelCardError, match="takes 800 values but musicnn-msd-1 give 400"):
        MusicnnHead(card, threads=1, prefer_gpu=False)


def test_head_without_its_network_is_refused(tmp_path: Path) -> None:
    card = _save(_head(400), tmp_path)
    (tmp_path / "musicnn-msd-1.json").unlink()
    with pytest.raises(ModelNotFoundError, match=r"musicnn-msd-1\.json"):
        MusicnnHead(card, threads=1, prefer_gpu=False)


def test_head_trained_on_other_preprocessing_is_refused(tmp_path: Path) -> None:
    card = _save(_head(400), tmp_path)
    with pytest.raises(ModelCardError, match="preprocessing"):
        MusicnnHead(card, preprocessing=AnalysisConfig(n_mels=96).preprocessing(),
                    threads=1, prefer_gpu=False)


def test_head_card_without_a_layout_is_refused(tmp_path: Path) -> None:
    card_path = _save(_head(400), tmp_path)
    text = card_path.read_text().replace('"embedding"', '"not-the-embedding"')
    card_path.write_text(text)
    with pytest.raises(ModelCardError, match="must name the networks"):
        MusicnnHead(card_path, threads=1, prefer_gpu=False)


def test_service_stores_the_embedding_for_like_this_one(tmp_path: Path, clip: Path,
                                                        tiny_models_dir: Path) -> None:
    import asyncio
    import shutil

    from bot.service import MoodService
    from bot.settings import Settings

    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    _save(_head(400), models)
    settings = Settings.load(None, data_dir=tmp_path, engine={"models_dir": models,
                                                              "workers": 1})

    async def run() -> tuple[list[float] | None, list[float] | None]:
        async with await MoodService.create(settings, allow_local_files=True) as service:
            assert set(service.versions) == {"cldnn", "ensemble", "musicnn"}
            fresh = await service.classify(str(clip))
            (stored,) = await service.recommendations.library()
            return fresh.result.embedding, stored.embedding

    fresh, stored = asyncio.run(run())
    assert fresh is not None and len(fresh) == 400
    assert stored is not None
    np.testing.assert_allclose(stored, fresh, rtol=1e-6)
