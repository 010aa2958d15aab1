"""Tiny but real models trained on synthetic clips, for tests (seconds, not minutes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from mer_models.card import ModelCard, TrainingData
from mer_models.config import AnalysisConfig
from mer_models.features import clip_descriptors, extract_features
from tests.synth import mood_clip
from train.cldnn import Cldnn, CldnnConfig
from train.ensemble import build_ensemble, save_ensemble
from train.export import cldnn_card, export_onnx

TINY_CLDNN = CldnnConfig(channels=(4, 8, 8), lstm_hidden=8, dense=8, dropout=0.0)
_SYNTH = TrainingData(dataset="synthetic test clips", n_clips=32, split="none (test fixture)")


def synthetic_features(config: AnalysisConfig, per_class: int = 8):
    """Log-mels, clip descriptors and labels of synthetic clips."""
    logmels, descriptors, labels = [], [], []
    for q in ("Q1", "Q2", "Q3", "Q4"):
        for i in range(per_class):
            clip = mood_clip(q, seconds=6.0, seed=i)
            start = np.linspace(0, len(clip) - config.window_samples, config.n_windows)
            windows = np.stack([clip[int(s) : int(s) + config.window_samples] for s in start])
            feats = extract_features(windows, config)
            logmels.append(feats.logmel)
            descriptors.append(clip_descriptors(feats.descriptors))
            labels.append(q)
    return np.stack(logmels), np.stack(descriptors), np.array(labels)


def build_tiny_models(directory: Path, config: AnalysisConfig | None = None) -> Path:
    """Train and save a tiny CLDNN and ensemble into ``directory``; return it."""
    config = config or AnalysisConfig()
    directory.mkdir(parents=True, exist_ok=True)
    logmels, descriptors, labels = synthetic_features(config)
    torch.manual_seed(0)
    model = Cldnn(TINY_CLDNN)
    model.set_input_stats(float(logmels.mean()), float(logmels.std()))
    x = torch.from_numpy(logmels.reshape(-1, config.n_mels, config.window_frames))
    y = torch.from_numpy(np.repeat(np.searchsorted(["Q1", "Q2", "Q3", "Q4"], labels),
                                   logmels.shape[1]))
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(15):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model.logits(x), y)
        loss.backward()
        optimiser.step()
    onnx_path = directory / "mood-4q-cldnn-test.onnx"
    export_onnx(model, onnx_path)
    card = cldnn_card(artifact=onnx_path, version="test", model=model, analysis=config,
                      training=_SYNTH, metrics={"train_loss": float(loss)}, fusion_weight=0.5)
    card.save(directory / "mood-4q-cldnn-test.json")
    ensemble = build_ensemble(n_trees=10, smote_neighbors=3).fit(descriptors, labels)
    save_ensemble(ensemble, directory, version="test", analysis=config, training=_SYNTH,
                  metrics={}, fusion_weight=0.5)
    return directory


def reweighted_copy(models: Path, destination: Path) -> Path:
    """A copy of a models folder with other fusion weights (CLDNN 0.9, the others 0.1)."""
    shutil.copytree(models, destination)
    for path in destination.glob("*.json"):
        card = ModelCard.load(path)
        card.fusion_weight = 0.9 if card.kind == "cldnn" else 0.1
        card.save(path)
    return destination
