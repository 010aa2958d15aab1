"""Real, short audio files made from synthetic tones (MP3 through libsndfile)."""

from __future__ import annotations

import functools
import io

import numpy as np
import soundfile as sf


@functools.lru_cache(maxsize=8)
def tone_mp3(seconds: float = 2.0, freq: float = 440.0, sr: int = 22_050) -> bytes:
    """A mono MP3 of a sine tone (a few kB per second)."""
    t = np.arange(int(seconds * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="MP3")
    return buf.getvalue()
