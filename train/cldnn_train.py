"""Training loop of the CLDNN: AdamW, one-cycle schedule, SpecAugment, early stopping."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray
from torch.nn import functional as F

from train.cldnn import Cldnn, CldnnConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation hyper-parameters (the CPU default fits 30 minutes on 2 cores)."""

    epochs: int = 12
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-2
    patience: int = 4
    freq_masks: int = 2
    freq_mask_width: int = 12
    time_masks: int = 2
    time_mask_width: int = 24
    label_smoothing: float = 0.05
    seed: int = 0
    threads: int = 2
    model: CldnnConfig = field(default_factory=CldnnConfig)

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        return asdict(self)


#: Small enough for a 2-core CPU: about 20 s per epoch on 2,880 windows (measured, see
#: docs/MODEL_REPORT.md).
CPU_CONFIG = TrainConfig()
#: The full-width model for a CUDA machine.
GPU_CONFIG = TrainConfig(epochs=60, batch_size=64, lr=2e-3, patience=12,
                         model=CldnnConfig(channels=(32, 64, 128), lstm_hidden=128, dense=128))


def spec_augment(x: torch.Tensor, cfg: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment: random frequency and time masks set to the batch mean."""
    x = x.clone()
    batch, n_mels, frames = x.shape
    fill = x.mean()
    for _ in range(cfg.freq_masks):
        width = torch.randint(0, cfg.freq_mask_width + 1, (batch,), generator=generator)
        start = (torch.rand(batch, generator=generator) * (n_mels - width)).long()
        rows = torch.arange(n_mels)[None, :]
        mask = (rows >= start[:, None]) & (rows < (start + width)[:, None])
        x = torch.where(mask[:, :, None], fill, x)
    for _ in range(cfg.time_masks):
        width = torch.randint(0, cfg.time_mask_width + 1, (batch,), generator=generator)
        start = (torch.rand(batch, generator=generator) * (frames - width)).long()
        cols = torch.arange(frames)[None, :]
        mask = (cols >= start[:, None]) & (cols < (start + width)[:, None])
        x = torch.where(mask[:, None, :], fill, x)
    return x


def predict_windows(model: Cldnn, logmel: NDArray[np.floating], batch_size: int = 128
                    ) -> NDArray[np.float32]:
    """Probabilities of every window, shape (n, n_classes)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(logmel), batch_size):
            chunk = torch.from_numpy(np.asarray(logmel[i : i + batch_size], dtype=np.float32))
            out.append(model(chunk).numpy())
    return np.concatenate(out)


def train_cldnn(
    train_x: NDArray[np.floating], train_y: NDArray[np.integer],
    valid_x: NDArray[np.floating] | None, valid_y: NDArray[np.integer] | None,
    cfg: TrainConfig, *, score: Callable[[NDArray[np.float32], NDArray[np.integer]], float]
    | None = None, device: str = "cpu",
) -> tuple[Cldnn, list[dict[str, float]]]:
    """Train a CLDNN on windows; keep the epoch with the best validation score.

    Parameters
    ----------
    train_x : ndarray, shape (n, n_mels, frames)
        Log-mel windows in dB.
    train_y : ndarray, shape (n,)
        Class indices.
    valid_x, valid_y : ndarray, optional
        Validation windows; without them the model trains for ``cfg.epochs``.
    cfg : TrainConfig
    score : callable, optional
        ``score(probabilities, labels) -> float`` (higher is better) on validation windows;
        default: accuracy.
    device : str
        ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    model : Cldnn
        On the CPU, in eval mode.
    history : list of dict
        Per epoch: train loss, validation score, seconds.
    """
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = Cldnn(cfg.model)
    # float64 accumulation: the cached windows are float16, whose sum overflows.
    model.set_input_stats(float(np.mean(train_x, dtype=np.float64)),
                          float(np.std(train_x, dtype=np.float64)))
    model.to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * int(np.ceil(len(train_x) / cfg.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=cfg.lr, total_steps=steps)
    x_all = torch.from_numpy(np.asarray(train_x, dtype=np.float32))
    y_all = torch.from_numpy(np.asarray(train_y, dtype=np.int64))
    score = score or (lambda p, y: float(np.mean(p.argmax(axis=1) == y)))
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    history: list[dict[str, float]] = []
    stale = 0
    for epoch in range(cfg.epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_all), generator=generator)
        losses = []
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb = spec_augment(x_all[idx], cfg, generator).to(device)
            loss = F.cross_entropy(model.logits(xb), y_all[idx].to(device),
                                   label_smoothing=cfg.label_smoothing)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses))}
        if valid_x is not None and valid_y is not None:
            model.cpu()
            record["valid_score"] = score(predict_windows(model, valid_x), valid_y)
            model.to(device)
            if best is None or record["valid_score"] > best[0]:
                best = (record["valid_score"],
                        {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
                stale = 0
            else:
                stale += 1
        record["seconds"] = time.perf_counter() - start
        history.append(record)
        logger.info("epoch %s", record)
        if valid_x is not None and stale >= cfg.patience:
            break
    model.cpu()
    if best is not None:
        model.load_state_dict(best[1])
    return model.eval(), history
