"""Analysis settings shared by training and serving.

One :class:`AnalysisConfig` describes how audio becomes model input. Model cards record the
fields returned by :meth:`AnalysisConfig.preprocessing`, and loading a model refuses a card whose
preprocessing differs from the engine's, so a model never sees input prepared differently from
its training data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from mer_models.errors import ParameterError

# Fields that change what a model sees; n_windows and the duration limits only change how
# many windows are analysed, so they are not part of a model's contract.
_PREPROCESSING_FIELDS = (
    "sample_rate",
    "n_fft",
    "hop_length",
    "n_mels",
    "window_frames",
    "fmin",
    "fmax",
    "db_floor",
)


@dataclass(frozen=True)
class AnalysisConfig:
    """How a clip is decoded, windowed and turned into features.

    Parameters
    ----------
    sample_rate : int
        Analysis rate in Hz; every input is resampled to it (mono).
    n_fft : int
        STFT frame length in samples.
    hop_length : int
        STFT hop in samples.
    n_mels : int
        Number of mel bands of the log-mel spectrogram.
    window_frames : int
        STFT frames per analysis window (216 frames at hop 512 and 22,050 Hz is 4.99 s).
    n_windows : int
        Number of windows spread evenly over the clip, first to last sample.
    fmin, fmax : float
        Frequency range of the mel filterbank in Hz (``fmax`` defaults to Nyquist).
    db_floor : float
        Lowest value of the log-mel spectrogram in dB (power re 1.0).
    max_duration : float
        Only the first ``max_duration`` seconds of an input are analysed.
    min_duration : float
        Inputs shorter than this (seconds) are refused.
    """

    sample_rate: int = 22_050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    window_frames: int = 216
    n_windows: int = 3
    fmin: float = 0.0
    fmax: float = 11_025.0
    db_floor: float = -100.0
    max_duration: float = 600.0
    min_duration: float = 3.0

    def __post_init__(self) -> None:
        positive = ("sample_rate", "n_fft", "hop_length", "n_mels", "window_frames", "n_windows")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ParameterError(f"{name} must be a positive integer, got {value!r}")
        if self.window_frames < 2:
            raise ParameterError(f"window_frames must be at least 2, got {self.window_frames}")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ParameterError(
                f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, fmax={self.fmax}"
            )
        if not 0 < self.min_duration <= self.max_duration:
            raise ParameterError(
                "need 0 < min_duration <= max_duration, got "
                f"min_duration={self.min_duration}, max_duration={self.max_duration}"
            )

    @property
    def window_samples(self) -> int:
        """Samples per window: with a centred STFT this yields exactly ``window_frames``."""
        return self.hop_length * (self.window_frames - 1)

    @property
    def window_seconds(self) -> float:
        """Duration of one window in seconds."""
        return self.window_samples / self.sample_rate

    def preprocessing(self) -> dict[str, Any]:
        """The settings a model depends on, as recorded in model cards."""
        values = asdict(self)
        return {name: values[name] for name in _PREPROCESSING_FIELDS}

    def with_windows(self, n_windows: int) -> AnalysisConfig:
        """A copy with another number of windows."""
        return replace(self, n_windows=n_windows)
