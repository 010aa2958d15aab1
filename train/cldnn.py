"""The CLDNN: convolutions with rectangular kernels, a bidirectional LSTM, dense heads.

Input: log-mel windows in dB, shape (batch, n_mels, frames). The first layer standardises
them with statistics fixed at training time (stored as buffers, so the exported ONNX graph
takes raw dB and the serving code needs no extra step). Output: quadrant probabilities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class CldnnConfig:
    """Architecture hyper-parameters.

    Attributes
    ----------
    n_mels, frames : int
        Input size.
    channels : tuple of int
        Output channels of each conv block.
    freq_kernels, time_kernels : tuple of int
        Kernel length of the frequency-only (k x 1) and time-only (1 x k) conv of each block.
    freq_pools, time_pools : tuple of int
        Max-pooling factors after each block.
    lstm_hidden, lstm_layers : int
        Bidirectional LSTM size.
    dense : int
        Width of the dense layer.
    dropout : float
        Dropout before the output layer.
    n_classes : int
        Number of output classes.
    """

    n_mels: int = 128
    frames: int = 216
    channels: tuple[int, ...] = (16, 32, 64)
    freq_kernels: tuple[int, ...] = (7, 5, 3)
    time_kernels: tuple[int, ...] = (5, 5, 3)
    freq_pools: tuple[int, ...] = (4, 4, 8)
    time_pools: tuple[int, ...] = (2, 2, 1)
    lstm_hidden: int = 64
    lstm_layers: int = 2
    dense: int = 64
    dropout: float = 0.3
    n_classes: int = 4

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form, for checkpoints and cards."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CldnnConfig:
        """Inverse of :meth:`to_dict` (JSON turns tuples into lists)."""
        converted: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                     for k, v in values.items()}
        return cls(**converted)


class _ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, k_freq: int, k_time: int,
                 pool: tuple[int, int]) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(c_in, c_out, (k_freq, 1), padding=(k_freq // 2, 0), bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, (1, k_time), padding=(0, k_time // 2), bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(pool),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class Cldnn(nn.Module):
    """CNN (rectangular kernels) -> 2-layer BiLSTM over time -> dense -> class probabilities."""

    input_mean: Tensor
    input_std: Tensor

    def __init__(self, config: CldnnConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or CldnnConfig()
        self.register_buffer("input_mean", torch.zeros(()))
        self.register_buffer("input_std", torch.ones(()))
        blocks, c_in, freq = [], 1, config.n_mels
        for c_out, kf, kt, pf, pt in zip(config.channels, config.freq_kernels,
                                         config.time_kernels, config.freq_pools,
                                         config.time_pools, strict=True):
            blocks.append(_ConvBlock(c_in, c_out, kf, kt, (pf, pt)))
            c_in, freq = c_out, freq // pf
        self.conv = nn.Sequential(*blocks)
        self.lstm = nn.LSTM(c_in * freq, config.lstm_hidden, num_layers=config.lstm_layers,
                            batch_first=True, bidirectional=True,
                            dropout=config.dropout if config.lstm_layers > 1 else 0.0)
        self.head = nn.Sequential(
            nn.Linear(4 * config.lstm_hidden, config.dense),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.dense, config.n_classes),
        )

    def checkpoint(self) -> dict[str, Any]:
        """``{"config": ..., "state": ...}``: everything :meth:`from_checkpoint` needs."""
        return {"config": self.config.to_dict(), "state": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> Cldnn:
        """The model saved by :meth:`checkpoint` (also as loaded back by
        ``torch.load(path, weights_only=True)``), in eval mode."""
        model = cls(CldnnConfig.from_dict(checkpoint["config"]))
        model.load_state_dict(checkpoint["state"])
        return model.eval()

    def set_input_stats(self, mean: float, std: float) -> None:
        """Fix the standardisation of the input dB values (from the training set)."""
        self.input_mean.fill_(mean)
        self.input_std.fill_(max(std, 1e-6))

    def logits(self, logmel: Tensor) -> Tensor:
        """Class logits, shape (batch, n_classes), from (batch, n_mels, frames) dB."""
        x = ((logmel - self.input_mean) / self.input_std).unsqueeze(1)
        x = self.conv(x)  # (batch, channels, freq, time)
        x = x.flatten(1, 2).transpose(1, 2)  # (batch, time, channels * freq)
        x, _ = self.lstm(x)
        pooled = torch.cat([x.mean(dim=1), x.amax(dim=1)], dim=1)
        return self.head(pooled)

    def forward(self, logmel: Tensor) -> Tensor:
        """Class probabilities, shape (batch, n_classes)."""
        return torch.softmax(self.logits(logmel), dim=-1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
