"""Synthetic audio for tests: chords, rhythms and noise with known character."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

SR = 22_050
_MAJOR = (0, 4, 7)
_MINOR = (0, 3, 7)


def chord(root_hz: float, intervals: tuple[int, ...], seconds: float, *, sr: int = SR,
          amplitude: float = 0.2) -> NDArray[np.float32]:
    """A sustained chord of decaying harmonic tones."""
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t)
    for semis in intervals:
        f = root_hz * 2 ** (semis / 12)
        for h in range(1, 5):
            y += np.sin(2 * np.pi * f * h * t) / h
    return (amplitude * y / np.abs(y).max()).astype(np.float32)


def clicks(bpm: float, seconds: float, *, sr: int = SR, seed: int = 0) -> NDArray[np.float32]:
    """Percussive noise bursts at a steady tempo."""
    rng = np.random.default_rng(seed)
    y = np.zeros(int(seconds * sr), dtype=np.float32)
    burst = (rng.standard_normal(int(0.03 * sr)) * np.exp(-np.linspace(0, 8, int(0.03 * sr))))
    for start in np.arange(0, seconds, 60.0 / bpm):
        i = int(start * sr)
        seg = y[i : i + len(burst)]
        seg += burst[: len(seg)].astype(np.float32) * 0.5
    return y


def mood_clip(quadrant: str, seconds: float = 6.0, *, seed: int = 0) -> NDArray[np.float32]:
    """A crude clip for each quadrant: fast/bright/major (Q1), fast/noisy/dissonant (Q2),
    slow/dark/minor (Q3), slow/soft/major (Q4)."""
    rng = np.random.default_rng(seed)
    root = 220.0 * 2 ** (rng.integers(0, 12) / 12)
    if quadrant == "Q1":
        y = chord(root * 2, _MAJOR, seconds) + clicks(150 + 10 * rng.random(), seconds, seed=seed)
    elif quadrant == "Q2":
        noise = rng.standard_normal(int(seconds * SR)).astype(np.float32) * 0.15
        y = chord(root, (0, 1, 6), seconds) + noise + clicks(170, seconds, seed=seed)
    elif quadrant == "Q3":
        y = chord(root / 2, _MINOR, seconds, amplitude=0.1)
    elif quadrant == "Q4":
        y = chord(root, _MAJOR, seconds, amplitude=0.08) + 0.2 * clicks(60, seconds, seed=seed)
    else:
        raise ValueError(f"unknown quadrant {quadrant!r}")
    return np.clip(y, -1, 1).astype(np.float32)
