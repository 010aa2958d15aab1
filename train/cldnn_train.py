"""Training loop of the CLDNN: AdamW, one-cycle schedule, SpecAugment, early stopping."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.nn import functional as F

from mer_models.config import AnalysisConfig
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
    #: Level changes (dB range, uniform) applied to a ``gain_prob`` share of the training
    #: windows; None: none. A gain is an offset of the dB values, floored at ``db_floor``.
    gain_db: tuple[float, float] | None = None
    gain_prob: float = 0.5
    db_floor: float = AnalysisConfig().db_floor
    seed: int = 0
    threads: int = 2
    model: CldnnConfig = field(default_factory=CldnnConfig)

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (lists back to tuples)."""
        values = dict(values)
        values["model"] = CldnnConfig.from_dict(values["model"])
        if values.get("gain_db") is not None:
            values["gain_db"] = tuple(values["gain_db"])
        return cls(**values)


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


def window_f1(p: NDArray[np.floating], y: NDArray[np.integer]) -> float:
    """Macro-F1 of the most probable class: the validation score of every CLDNN training."""
    from sklearn.metrics import f1_score

    return float(f1_score(y, p.argmax(axis=1), average="macro"))


def best_epoch(history: list[dict[str, float]]) -> int:
    """The (1-based) epoch of a validated training's best score."""
    return int(np.argmax([h["valid_score"] for h in history])) + 1


def final_epochs(histories: list[list[dict[str, float]]]) -> int:
    """Epochs for the final model, trained without validation: the folds' median best."""
    return max(2, int(np.median([best_epoch(h) for h in histories])))


def random_gain(x: torch.Tensor, cfg: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Level changes: a ``cfg.gain_prob`` share of the windows shifted by a uniform dB gain
    in ``cfg.gain_db`` (the spectrogram of ``gain * audio`` is that of the audio plus
    ``20 log10 gain``), floored at ``cfg.db_floor`` like the front end's output; bins at the
    floor (silence, or below it) stay there."""
    if cfg.gain_db is None:
        return x
    low, high = cfg.gain_db
    batch = x.shape[0]
    gain = low + (high - low) * torch.rand(batch, generator=generator)
    gain = torch.where(torch.rand(batch, generator=generator) < cfg.gain_prob, gain, 0.0)
    shifted = torch.clamp(x + gain[:, None, None].to(x.dtype), min=cfg.db_floor)
    return torch.where(x <= cfg.db_floor, x, shifted)


def predict_windows(model: Cldnn, logmel: NDArray[np.floating], batch_size: int = 128,
                    device: str = "cpu") -> NDArray[np.float32]:
    """Probabilities of every window, shape (n, n_classes), computed on ``device`` (where
    the model must already be)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(logmel), batch_size):
            chunk = torch.from_numpy(np.asarray(logmel[i : i + batch_size], dtype=np.float32))
            out.append(model(chunk.to(device)).cpu().numpy())
    return np.concatenate(out)


def train_cldnn(
    train_x: NDArray[np.floating], train_y: NDArray[np.integer],
    valid_x: NDArray[np.floating] | None, valid_y: NDArray[np.integer] | None,
    cfg: TrainConfig, *, score: Callable[[NDArray[np.float32], NDArray[np.integer]], float]
    | None = None, device: str = "cpu", deadline: float | None = None,
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
    deadline : float, optional
        A ``time.time()`` after which no new epoch starts (the best epoch so far is kept):
        for a machine lent for a fixed time.

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
            xb = spec_augment(random_gain(x_all[idx], cfg, generator), cfg, generator)
            xb = xb.to(device)
            loss = F.cross_entropy(model.logits(xb), y_all[idx].to(device),
                                   label_smoothing=cfg.label_smoothing)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses))}
        if valid_x is not None and valid_y is not None:
            record["valid_score"] = score(predict_windows(model, valid_x, device=device),
                                          valid_y)
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
        if deadline is not None and time.time() > deadline and epoch + 1 < cfg.epochs:
            logger.warning("deadline reached after epoch %d of %d", epoch + 1, cfg.epochs)
            break
    model.cpu()
    if best is not None:
        model.load_state_dict(best[1])
    return model.eval(), history
