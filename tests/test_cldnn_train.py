"""The CLDNN's training loop: level-change augmentation, config round trip, deadline."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from mer_models.config import AnalysisConfig
from tests.tiny_models import TINY_CLDNN
from train.cldnn_train import GPU_CONFIG, TrainConfig, random_gain, train_cldnn


def test_random_gain_shifts_whole_windows_within_range_and_keeps_the_floor() -> None:
    cfg = replace(TrainConfig(), gain_db=(-12.0, 6.0), gain_prob=0.5)
    assert cfg.db_floor == AnalysisConfig().db_floor
    x = torch.linspace(-100.0, 30.0, 8 * 10).reshape(1, 8, 10).repeat(64, 1, 1)
    x[:, 0, 0] = -100.0  # digital silence stays at the floor
    y = random_gain(x, cfg, torch.Generator().manual_seed(1))
    above = x > -80  # far enough from the floor that no shift is clipped
    shift = (y - x)[above].reshape(64, -1)
    per_window = shift[:, 0]
    assert torch.allclose(shift, per_window[:, None].expand_as(shift), atol=1e-4)  # one gain
    assert per_window.min() >= -12.0 and per_window.max() <= 6.0
    changed = int((per_window != 0).sum())
    assert 16 <= changed <= 48  # about half of the 64 windows
    assert float(y.min()) == -100.0 and float(y[:, 0, 0].max()) == -100.0
    assert torch.equal(random_gain(x, TrainConfig(), torch.Generator()), x)  # off by default


def test_train_config_survives_json() -> None:
    cfg = replace(GPU_CONFIG, gain_db=(-12.0, 6.0))
    import json

    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_a_passed_deadline_stops_after_one_epoch_and_keeps_the_best(
        rng: np.random.Generator) -> None:
    x = rng.normal(-30, 10, (24, 128, 216)).astype(np.float32)
    y = np.arange(24) % 4
    cfg = replace(TrainConfig(), epochs=5, batch_size=8, threads=1, model=TINY_CLDNN)
    _, history = train_cldnn(x, y, x[:8], y[:8], cfg, deadline=time.time() - 1)
    assert len(history) == 1 and "valid_score" in history[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_validation_runs_on_the_training_device(rng: np.random.Generator) -> None:
    x = rng.normal(-30, 10, (16, 128, 216)).astype(np.float32)
    y = np.arange(16) % 4
    cfg = replace(TrainConfig(), epochs=1, batch_size=8, model=TINY_CLDNN)
    model, history = train_cldnn(x, y, x, y, cfg, device="cuda")
    assert next(model.parameters()).device.type == "cpu" and "valid_score" in history[0]
