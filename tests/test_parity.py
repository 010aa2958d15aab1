"""Training and serving prepare audio identically; the ONNX export matches torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mer_models.audio import load_windows
from mer_models.config import AnalysisConfig
from mer_models.features import clip_descriptors, extract_features
from tests.synth import SR, mood_clip
from tests.tiny_models import TINY_CLDNN
from train.cldnn import Cldnn
from train.data import Clip, compute_features, serving_windows
from train.export import export_onnx


def test_training_cache_matches_serving_features(tmp_path: Path) -> None:
    clips = []
    for i, q in enumerate(("Q1", "Q3")):
        path = tmp_path / f"{q}.wav"
        sf.write(path, mood_clip(q, seconds=12.0, seed=i), SR)
        clips.append(Clip(f"song{i}", q, f"artist{i}", i, path))
    serving = AnalysisConfig()  # 3 windows
    cached = compute_features(clips, AnalysisConfig(n_windows=5), cache_dir=tmp_path / "cache",
                              workers=1)
    index = serving_windows(5, serving.n_windows)
    assert index == [0, 2, 4]
    for i, clip in enumerate(clips):
        served = extract_features(load_windows(clip.path, serving).windows, serving)
        np.testing.assert_allclose(cached.logmel[i, index].astype(np.float32), served.logmel,
                                   atol=0.05)  # float16 storage of dB values
        np.testing.assert_array_equal(cached.descriptors[i, index], served.descriptors)
        np.testing.assert_array_equal(clip_descriptors(cached.descriptors[i, index]),
                                      clip_descriptors(served.descriptors))
    again = compute_features(clips, AnalysisConfig(n_windows=5), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.logmel, cached.logmel)  # from the cache this time


def test_serving_windows_subset_rule() -> None:
    assert serving_windows(5, 1) == [0]
    assert serving_windows(9, 5) == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError):
        serving_windows(5, 4)


@pytest.mark.parametrize("batch", [1, 32])
def test_onnx_export_matches_torch(tmp_path: Path, batch: int) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    model = Cldnn(TINY_CLDNN)
    model.set_input_stats(-40.0, 20.0)
    path = tmp_path / "m.onnx"
    assert export_onnx(model, path) < 1e-4
    x = (torch.randn(batch, 128, 216) * 20 - 40)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"logmel": x.numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
