"""The result of classifying one clip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mer_models.moods import QUADRANTS, Quadrant


@dataclass(frozen=True)
class WindowResult:
    """Quadrant probabilities of one analysis window (one point of the timeline)."""

    start: float
    end: float
    probabilities: dict[str, float]

    @property
    def quadrant(self) -> Quadrant:
        """The most likely quadrant of this window."""
        return Quadrant(max(self.probabilities, key=self.probabilities.__getitem__))


@dataclass(frozen=True)
class MoodResult:
    """Emotion of one clip.

    Attributes
    ----------
    input : str
        The input's name (path, URL or label).
    probabilities : dict
        ``{"Q1": p1, ..., "Q4": p4}``, summing to 1.
    windows : list of WindowResult
        The per-window timeline, in time order.
    models : dict
        ``{kind: name-version}`` of the fused models, e.g. ``{"cldnn": ..., "ensemble": ...}``.
    weights : dict
        ``{kind: fusion weight}`` of the same models (empty for a stored result).
    timings_ms : dict
        Milliseconds spent per stage (decode, features, one per model kind, total).
    duration : float
        Analysed duration of the input in seconds.
    descriptors : dict
        The clip's descriptor vector by name (what the ensemble saw); not part of the JSON.
    embedding : list of float or None
        The clip's musicnn embedding (what the third model saw, and what "tracks like this
        one" compares), when the engine has that model; not part of the JSON.
    """

    input: str
    probabilities: dict[str, float]
    windows: list[WindowResult]
    models: dict[str, str]
    timings_ms: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0
    descriptors: dict[str, float] = field(default_factory=dict, repr=False)
    embedding: list[float] | None = field(default=None, repr=False)
    weights: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_arrays(
        cls,
        *,
        input: str,
        window_probabilities: NDArray[np.floating],
        starts: NDArray[np.floating],
        window_seconds: float,
        models: dict[str, str],
        weights: dict[str, float],
        timings_ms: dict[str, float],
        duration: float,
        descriptors: dict[str, float] | None = None,
        embedding: list[float] | None = None,
    ) -> MoodResult:
        """Build a result from per-window probabilities (n_windows, 4) in Q1..Q4 order."""
        rows = np.asarray(window_probabilities, dtype=np.float64)
        clip = rows.mean(axis=0)
        clip = clip / clip.sum()
        last = max(duration, window_seconds)
        windows = [
            WindowResult(start=round(float(s), 3),
                         end=round(float(min(s + window_seconds, last)), 3),
                         probabilities=_as_dict(row / row.sum()))
            for s, row in zip(starts, rows, strict=True)
        ]
        return cls(input=input, probabilities=_as_dict(clip), windows=windows, models=models,
                   weights=weights, timings_ms=timings_ms, duration=duration,
                   descriptors=descriptors or {}, embedding=embedding)

    @property
    def quadrant(self) -> Quadrant:
        """The most likely quadrant."""
        return Quadrant(max(self.probabilities, key=self.probabilities.__getitem__))

    @property
    def mood(self) -> str:
        """User-facing mood of the most likely quadrant (happy, tense, sad, calm)."""
        return self.quadrant.mood

    @property
    def valence(self) -> float:
        """``P(Q1) + P(Q4)``, in [0, 1]."""
        return self.probabilities["Q1"] + self.probabilities["Q4"]

    @property
    def arousal(self) -> float:
        """``P(Q1) + P(Q2)``, in [0, 1]."""
        return self.probabilities["Q1"] + self.probabilities["Q2"]

    @property
    def confidence(self) -> float:
        """Probability of the chosen quadrant."""
        return max(self.probabilities.values())

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON contract (one object per input)."""
        return {
            "input": self.input,
            "mood": self.mood,
            "quadrant": self.quadrant.value,
            "probabilities": self.probabilities,
            "valence": round(self.valence, 4),
            "arousal": round(self.arousal, 4),
            "confidence": round(self.confidence, 4),
            "windows": [
                {"start": w.start, "end": w.end, "quadrant": w.quadrant.value,
                 "probabilities": w.probabilities}
                for w in self.windows
            ],
            "models": self.models,
            "elapsed_ms": round(self.timings_ms.get("total", 0.0), 1),
        }


def _as_dict(row: NDArray[np.floating]) -> dict[str, float]:
    return {q.value: round(float(p), 4) for q, p in zip(QUADRANTS, row, strict=True)}
