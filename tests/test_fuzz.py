"""Bounded fuzzing of decoding and features: bytes -> windows -> features -> model inputs.

Hypothesis draws the inputs; the run is derandomised (the same examples every time, no example
database) and small, so it is a regression test. ``bench/fuzz.py`` runs the same properties for
much longer (and under atheris when it is installed).

The properties: decoding arbitrary bytes gives analysable windows or an :class:`AudioError`;
features of arbitrary sample arrays are finite and of the documented shapes, or a
:class:`ParameterError` exactly when the array is invalid (wrong shape, not finite, beyond
:data:`MAX_PEAK`); whatever the decoder lets through, the features take, and the clip vector
the ensemble sees is finite too.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from mer_models.audio import MAX_PEAK, WindowedAudio, load_windows
from mer_models.config import AnalysisConfig
from mer_models.errors import AudioError, ParameterError
from mer_models.features import DESCRIPTOR_NAMES, Features, clip_descriptors, extract_features

#: Short clips: decoding and features of one 5 s window per example.
CONFIG = AnalysisConfig(n_windows=1, min_duration=0.5)
SR = CONFIG.sample_rate

FUZZ = settings(derandomize=True, database=None, deadline=10_000, max_examples=25,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- what must hold (shared with bench/fuzz.py) ------------------------------------------------


def check_decoding(data: bytes, config: AnalysisConfig = CONFIG) -> WindowedAudio | None:
    """Decode ``data``: windows of the documented shape, finite and audible, or an AudioError.

    Returns the windows, or None when the bytes were refused with an :class:`AudioError`
    whose message names the input and a reason. Anything else raised is a failure.
    """
    try:
        audio = load_windows(data, config, name="<fuzz>")
    except AudioError as exc:
        assert str(exc).startswith("<fuzz>: ") and exc.reason, exc
        return None
    assert audio.windows.shape == (config.n_windows, config.window_samples)
    assert audio.windows.dtype == np.float32
    assert np.isfinite(audio.windows).all()
    assert 0 < float(np.max(np.abs(audio.windows))) <= MAX_PEAK
    assert audio.duration >= config.min_duration
    return audio


def is_valid_windows(windows: NDArray[np.float64], config: AnalysisConfig = CONFIG) -> bool:
    """Whether :func:`extract_features` documents ``windows`` as acceptable."""
    if windows.ndim != 2 or windows.shape[0] < 1 or windows.shape[1] != config.window_samples:
        return False
    peak = float(np.max(np.abs(windows)))
    return bool(np.isfinite(peak)) and peak <= MAX_PEAK


def check_features(windows: NDArray[np.float64], config: AnalysisConfig = CONFIG
                   ) -> Features | None:
    """Features of ``windows``: finite and of the documented shapes, or a ParameterError
    exactly when the windows are invalid. Returns None when refused."""
    valid = is_valid_windows(windows, config)
    try:
        features = extract_features(windows, config)  # type: ignore[arg-type]
    except ParameterError as exc:
        assert not valid, f"valid windows refused: {exc}"
        assert "windows" in str(exc)
        return None
    assert valid, "invalid windows were not refused"
    n = windows.shape[0]
    assert features.logmel.shape == (n, config.n_mels, config.window_frames)
    assert features.descriptors.shape == (n, len(DESCRIPTOR_NAMES))
    assert np.isfinite(features.logmel).all()
    assert (features.logmel >= config.db_floor).all()
    finite = [bool(v) for v in np.asarray(np.isfinite(features.descriptors).all(axis=0))]
    assert all(finite), [n for n, ok in zip(DESCRIPTOR_NAMES, finite, strict=True) if not ok]
    clip = clip_descriptors(features.descriptors)
    assert clip.shape == (len(DESCRIPTOR_NAMES),) and np.isfinite(clip).all()
    return features


# --- strategies --------------------------------------------------------------------------------


def _wav_header(n_bytes: int, *, rate: int, channels: int, bits: int, fmt: int) -> bytes:
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", min(36 + n_bytes, 2**32 - 1)) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, fmt, channels, rate,
                                    min(rate * block, 2**32 - 1), block, bits)
            + b"data" + struct.pack("<I", n_bytes))


@st.composite
def audio_bytes(draw: st.DrawFn) -> bytes:
    """Bytes that look like audio to different depths: random, a known magic number, a WAV
    header with any fields, or a real short file, then cut, flipped or padded."""
    kind = draw(st.sampled_from(["random", "magic", "wav-header", "real"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=2048))
    if kind == "magic":
        magic = draw(st.sampled_from([b"RIFF\0\0\0\0WAVE", b"fLaC", b"OggS", b"ID3\x04",
                                      b"\xff\xfb\x90\x00", b"FORM\0\0\0\0AIFF",
                                      b"\0\0\0\x20ftypM4A ", b"\x1aE\xdf\xa3"]))
        return magic + draw(st.binary(min_size=0, max_size=2048))
    if kind == "wav-header":
        body = draw(st.binary(min_size=0, max_size=4096))
        header = _wav_header(
            draw(st.one_of(st.just(len(body)), st.integers(0, 2**32 - 1))),
            rate=draw(st.sampled_from([1, 8000, 22050, 44100, 192000, 2**31 - 1])),
            channels=draw(st.integers(0, 9)), bits=draw(st.sampled_from([0, 8, 16, 24, 32, 64])),
            fmt=draw(st.sampled_from([1, 3, 0, 0xFFFE])))
        return header + body
    seconds = draw(st.floats(0.1, 1.5))
    samples = draw(_signals(int(seconds * SR)))
    buf = io.BytesIO()
    container = draw(st.sampled_from([("WAV", "FLOAT"), ("WAV", "PCM_16"), ("FLAC", "PCM_16"),
                                      ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")]))
    if container[1] != "FLOAT":  # encoders take real samples (LAME aborts the process on NaN)
        samples = np.clip(np.nan_to_num(samples, posinf=1.0, neginf=-1.0), -1, 1)
    sf.write(buf, samples, SR, format=container[0], subtype=container[1])
    data = bytearray(buf.getvalue())
    damage = draw(st.sampled_from(["none", "cut", "flip", "pad"]))
    if damage == "cut":
        del data[draw(st.integers(1, max(1, len(data) - 1))):]
    elif damage == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    elif damage == "pad":
        data += draw(st.binary(min_size=1, max_size=512))
    return bytes(data)


@st.composite
def _signals(draw: st.DrawFn, n: int) -> NDArray[np.float64]:
    """A signal of ``n`` samples: noise, a tone, a constant, clicks or silence, at any scale,
    with some samples replaced by NaN, infinity or extremes."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["noise", "tone", "constant", "clicks", "zeros"]))
    scale = draw(st.sampled_from([0.3, 1.0, 0.0, 1e-300, 1e-38, 1e-10, 1e-4, 0.01, 3.3e4, 1e6,
                                  1e7, 1e30, 1e300]))
    if kind == "noise":
        x = rng.standard_normal(n)
    elif kind == "tone":
        x = np.sin(2 * np.pi * draw(st.floats(1.0, SR / 2)) * np.arange(n) / SR)
    elif kind == "constant":
        x = np.ones(n)
    elif kind == "clicks":
        x = (rng.random(n) < 0.001).astype(np.float64)
    else:
        x = np.zeros(n)
    x = x * scale
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 3])) if n else 0):
        special = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e38, -1e38, 5e-324]))
        x[draw(st.integers(0, n - 1))] = special
    return x


@st.composite
def windows_arrays(draw: st.DrawFn) -> NDArray[np.float64]:
    """Mostly well-shaped windows; sometimes a wrong shape (short, long, 1-D, empty)."""
    shape = draw(st.sampled_from(["ok"] * 6 + ["short", "long", "1d", "empty"]))
    width = CONFIG.window_samples
    if shape == "short":
        return draw(_signals(draw(st.integers(0, width - 1))))[None]
    if shape == "long":
        return draw(_signals(width + draw(st.integers(1, 4096))))[None]
    if shape == "1d":
        return draw(_signals(width))
    if shape == "empty":
        return np.zeros((0, width))
    return np.stack([draw(_signals(width)) for _ in range(draw(st.integers(1, 2)))])


# --- the bounded runs ------------------------------------------------------------------------


@FUZZ
@given(audio_bytes())
def test_decoding_arbitrary_bytes(data: bytes) -> None:
    check_decoding(data)


@FUZZ
@given(windows_arrays())
def test_features_of_arbitrary_samples(windows: NDArray[np.float64]) -> None:
    check_features(windows)


@settings(FUZZ, max_examples=15)
@given(audio_bytes())
def test_bytes_to_model_inputs(data: bytes) -> None:
    audio = check_decoding(data)
    if audio is not None:  # what the decoder lets through, the features must take
        assert check_features(audio.windows.astype(np.float64)) is not None


# --- the properties can fail -------------------------------------------------------------------


@dataclass(frozen=True)
class _Case:
    windows: NDArray[np.float64]
    refused: bool


@pytest.mark.parametrize("case", [
    pytest.param(_Case(np.full((1, CONFIG.window_samples), np.nan), True), id="nan"),
    pytest.param(_Case(np.full((1, CONFIG.window_samples), 1e30), True), id="1e30"),
    pytest.param(_Case(np.zeros((1, 10)), True), id="short"),
    pytest.param(_Case(np.zeros((0, CONFIG.window_samples)), True), id="no-window"),
    pytest.param(_Case(np.full((1, CONFIG.window_samples), MAX_PEAK), False), id="max-peak"),
    pytest.param(_Case(np.zeros((1, CONFIG.window_samples)), False), id="zeros"),
])
def test_invalid_windows_are_refused_by_name(case: _Case) -> None:
    if case.refused:
        with pytest.raises(ParameterError, match="windows"):
            extract_features(case.windows, CONFIG)  # type: ignore[arg-type]
    else:
        assert check_features(case.windows) is not None


def test_samples_far_past_full_scale_were_a_librosa_error(tmp_path: Path) -> None:
    """Found by the fuzzer: a float WAV at 1e30 leaked librosa's ParameterError ("Input must
    be finite") out of the features; now the decoder refuses it and names the level."""
    path = tmp_path / "loud.wav"
    sf.write(path, np.full(SR, 1e30, dtype=np.float32), SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"reach 1e\+30, far beyond full scale"):
        load_windows(path, CONFIG)

