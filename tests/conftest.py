"""Shared fixtures: tiny trained models, synthetic audio files."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import settings

from mer_models.config import AnalysisConfig
from tests.fakes.discord_fixtures import bot, library_db, service  # noqa: F401  (fixtures)
from tests.fakes.mpd import mpd_daemon, mpd_server  # noqa: F401  (fixtures: a real MPD)
from tests.fakes.postgres import postgres_server, postgres_url  # noqa: F401  (a real PostgreSQL)
from tests.synth import SR, chord, clicks, mood_clip

# Property tests see the same examples on every run, so that CI is reproducible (a random run
# once found a new edge case and turned CI red). Explore with HYPOTHESIS_PROFILE=explore and
# keep what it finds as a plain test.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a tiny CLDNN (ONNX) and ensemble (skops) trained on synthetic clips."""
    from tests.tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def mood_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One 8-second synthetic WAV per quadrant."""
    folder = tmp_path_factory.mktemp("clips")
    files = {}
    for q in ("Q1", "Q2", "Q3", "Q4"):
        path = folder / f"{q}.wav"
        sf.write(path, mood_clip(q, seconds=8.0, seed=100), SR)
        files[q] = path
    return files


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator."""
    return np.random.default_rng(12345)


# --- Decoding and feature fixtures (tests/test_audio.py, test_features.py, test_card.py) ---


@pytest.fixture(scope="session")
def config() -> AnalysisConfig:
    """The default analysis settings (22,050 Hz, 3 windows of 216 frames)."""
    return AnalysisConfig()


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    """Path of the ffmpeg executable; skips the test when ffmpeg is not installed."""
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("ffmpeg is not installed: M4A/AAC can only be written and decoded with it")
    return path


@pytest.fixture
def write_audio(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write_audio(name, samples, sr, **soundfile_kwargs) -> path in tmp_path."""

    def write(name: str, samples: np.ndarray, sr: int, **kwargs: object) -> Path:
        path = tmp_path / name
        sf.write(path, samples, sr, **kwargs)
        return path

    return write


@pytest.fixture
def encode_m4a(ffmpeg: str) -> Callable[..., Path]:
    """Factory: encode_m4a(wav_path, faststart=False) -> an AAC .m4a beside it, made by ffmpeg.

    ffmpeg's default MP4 layout puts the index (moov atom) after the audio data, like most
    phone recordings; ``faststart=True`` moves it to the front, like streaming-ready files.
    """
    def encode(wav: Path, *, faststart: bool = False) -> Path:
        out = wav.with_suffix(".faststart.m4a" if faststart else ".m4a")
        cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav),
               "-c:a", "aac", "-b:a", "96k"]
        cmd += ["-movflags", "+faststart"] if faststart else []
        subprocess.run([*cmd, str(out)], check=True, capture_output=True, timeout=60)
        return out

    return encode


@pytest.fixture(scope="session")
def noise() -> np.ndarray:
    """6 s of white noise at SR (seeded), RMS 0.1."""
    return (0.1 * np.random.default_rng(7).standard_normal(6 * SR)).astype(np.float32)


@pytest.fixture(scope="session")
def major_chord() -> np.ndarray:
    """6 s of a sustained C major triad at SR."""
    return chord(261.63, (0, 4, 7), 6.0)


@pytest.fixture(scope="session")
def minor_chord() -> np.ndarray:
    """6 s of a sustained C minor triad at SR."""
    return chord(261.63, (0, 3, 7), 6.0)


@pytest.fixture(scope="session")
def click_track() -> np.ndarray:
    """6 s of noise bursts at 120 BPM at SR."""
    return clicks(120, 6.0)
