"""Decoding: formats, bytes input, the bad-input corpus, duration limits and window placement."""

from __future__ import annotations

import os
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from mer_models.audio import (
    WindowedAudio,
    load_audio,
    load_windows,
    nested_windows,
    window_starts,
)
from mer_models.config import AnalysisConfig
from mer_models.errors import (
    AudioDecodeError,
    AudioError,
    AudioNotFoundError,
    AudioTooShortError,
    EmptyAudioError,
    MerError,
    SilentAudioError,
)
from tests.synth import SR, chord

SECONDS = 12.0
#: Allowed error on a decoded duration: encoder delay/padding of lossy codecs (AAC ~ 50 ms).
DURATION_TOL = 0.05


def _tone(freq: float, seconds: float, sr: int, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _stereo(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.stack([left, right], axis=1)


def _check_windowed(result: WindowedAudio, config: AnalysisConfig, seconds: float) -> None:
    assert isinstance(result, WindowedAudio)
    assert result.windows.shape == (config.n_windows, config.window_samples)
    assert result.windows.dtype == np.float32
    assert np.isfinite(result.windows).all()
    assert result.duration == pytest.approx(seconds, abs=DURATION_TOL)
    assert result.starts.shape == (config.n_windows,)
    assert result.starts[0] == 0.0
    assert result.starts[-1] + config.window_seconds <= result.duration + 1e-6


# ---------------------------------------------------------------------------------------------
# Formats

# id, file name, native rate, channels, soundfile keyword arguments
SOUNDFILE_FORMATS = [
    ("wav-44k-stereo", "clip.wav", 44_100, 2, {}),
    ("wav-8k-mono", "clip.wav", 8_000, 1, {}),
    ("flac", "clip.flac", 44_100, 2, {}),
    ("ogg-vorbis", "clip.ogg", 44_100, 2, {"format": "OGG", "subtype": "VORBIS"}),
    ("ogg-opus", "clip.opus", 48_000, 2, {"format": "OGG", "subtype": "OPUS"}),
    ("mp3", "clip.mp3", 44_100, 2, {"format": "MP3"}),
]


def _clip(sr: int, channels: int) -> np.ndarray:
    mono = _tone(440.0, SECONDS, sr, amplitude=0.2) + _tone(660.0, SECONDS, sr, amplitude=0.1)
    return mono if channels == 1 else _stereo(mono, mono)


@pytest.mark.parametrize(
    ("name", "sr", "channels", "kwargs"),
    [case[1:] for case in SOUNDFILE_FORMATS],
    ids=[case[0] for case in SOUNDFILE_FORMATS],
)
def test_soundfile_formats_decode(
    write_audio: Callable[..., Path], config: AnalysisConfig, name: str, sr: int, channels: int,
    kwargs: dict[str, Any],
) -> None:
    path = write_audio(name, _clip(sr, channels), sr, **kwargs)
    result = load_windows(path, config)
    _check_windowed(result, config, SECONDS)
    assert result.decoder == "soundfile"
    assert result.source == str(path)


def test_m4a_decodes_with_ffmpeg(
    write_audio: Callable[..., Path], encode_m4a: Callable[..., Path], config: AnalysisConfig
) -> None:
    m4a = encode_m4a(write_audio("clip.wav", _clip(44_100, 2), 44_100))
    result = load_windows(m4a, config)
    _check_windowed(result, config, SECONDS)
    assert result.decoder == "ffmpeg"


def test_resampled_and_downmixed(write_audio: Callable[..., Path], config: AnalysisConfig) -> None:
    # Left and right differ in level: a downmix averages them (0.3), taking one channel would
    # give 0.5 or 0.1.
    tone = _tone(440.0, SECONDS, 44_100, amplitude=1.0)
    path = write_audio("a440.wav", _stereo(0.5 * tone, 0.1 * tone), 44_100, subtype="FLOAT")
    result = load_windows(path, config)
    assert config.sample_rate == 22_050
    window = result.windows[1].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    freqs = np.fft.rfftfreq(len(window), d=1.0 / config.sample_rate)
    peak = freqs[np.argmax(spectrum)]
    assert peak == pytest.approx(440.0, abs=2 * freqs[1])
    # The tone has no energy away from 440 Hz (no aliasing, no wrong-rate pitch shift).
    far = np.abs(freqs - 440.0) > 20.0
    assert spectrum[far].max() < 1e-3 * spectrum.max()
    assert np.sqrt(np.mean(window**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.01)


# ---------------------------------------------------------------------------------------------
# Bytes input


def test_wav_bytes_match_path(write_audio: Callable[..., Path], config: AnalysisConfig) -> None:
    path = write_audio("clip.wav", _clip(44_100, 2), 44_100)
    from_path = load_windows(path, config)
    from_bytes = load_windows(path.read_bytes(), config)
    np.testing.assert_array_equal(from_bytes.windows, from_path.windows)
    np.testing.assert_array_equal(from_bytes.starts, from_path.starts)
    assert from_bytes.duration == from_path.duration
    assert from_bytes.decoder == "soundfile"
    assert from_bytes.source == f"<{path.stat().st_size} bytes>"


def test_bytes_name_is_used_in_messages(config: AnalysisConfig) -> None:
    with pytest.raises(EmptyAudioError, match=r"upload\.mp3"):
        load_windows(b"", config, name="upload.mp3")


@pytest.mark.parametrize(
    "faststart",
    [
        True,
        False,
    ],
    ids=["moov-first", "moov-last"],
)
def test_m4a_bytes_match_path(
    write_audio: Callable[..., Path], encode_m4a: Callable[..., Path], config: AnalysisConfig,
    faststart: bool,
) -> None:
    m4a = encode_m4a(write_audio("clip.wav", _clip(44_100, 2), 44_100), faststart=faststart)
    from_path = load_windows(m4a, config)
    from_bytes = load_windows(m4a.read_bytes(), config)
    assert from_bytes.decoder == from_path.decoder == "ffmpeg"
    np.testing.assert_array_equal(from_bytes.windows, from_path.windows)
    assert from_bytes.duration == from_path.duration


# ---------------------------------------------------------------------------------------------
# Bad inputs


def _mp3_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "source.mp3"
    sf.write(path, _clip(44_100, 2), 44_100, format="MP3")
    return path.read_bytes()


def _empty_file(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return path


def _too_short(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "short.wav"
    sf.write(path, 0.1 * rng.standard_normal(int(0.1 * SR)), SR)
    return path


def _silent(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(5 * SR, dtype=np.float32), SR)
    return path


def _random_mp3(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "random.mp3"
    path.write_bytes(rng.bytes(8192))
    return path


def _text_wav(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "notes.wav"
    path.write_text("These are meeting notes, not audio.\n" * 50, encoding="utf-8")
    return path


def _truncated_mp3(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "truncated.mp3"
    path.write_bytes(_mp3_bytes(tmp_path)[:200])
    return path


def _directory(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "album.mp3"
    path.mkdir()
    return path


def _missing(tmp_path: Path, rng: np.random.Generator) -> Path:
    return tmp_path / "missing.wav"


def _no_bytes(tmp_path: Path, rng: np.random.Generator) -> bytes:
    return b""


# builder, expected error class, pattern the message must contain (the reason)
BAD_INPUTS = [
    pytest.param(_empty_file, EmptyAudioError, r"empty \(0 bytes\)", id="empty-file"),
    pytest.param(_too_short, AudioTooShortError, r"0\.10 s long; at least 3 s", id="0.1s"),
    pytest.param(_silent, SilentAudioError, r"silent", id="digital-silence"),
    pytest.param(_random_mp3, AudioDecodeError, r"not a decodable audio file", id="random.mp3"),
    pytest.param(_text_wav, AudioDecodeError, r"not a decodable audio file", id="text.wav"),
    pytest.param(_truncated_mp3, AudioError, None, id="mp3-first-200-bytes"),
    pytest.param(_directory, AudioNotFoundError, r"is a directory", id="directory"),
    pytest.param(_missing, AudioNotFoundError, r"no such file", id="missing"),
    pytest.param(_no_bytes, EmptyAudioError, r"no audio bytes", id="no-bytes"),
]


@pytest.mark.parametrize(("build", "error", "reason"), BAD_INPUTS)
def test_bad_input_raises(
    tmp_path: Path, rng: np.random.Generator, config: AnalysisConfig,
    build: Callable[[Path, np.random.Generator], Path | bytes], error: type[AudioError],
    reason: str | None,
) -> None:
    source = build(tmp_path, rng)
    name = f"<{len(source)} bytes>" if isinstance(source, bytes) else str(source)
    with pytest.raises(error) as info:
        load_windows(source, config)
    exc = info.value
    # A specific subclass, never the bare base class, and a message "<name>: <reason>".
    assert type(exc) is not AudioError
    assert isinstance(exc, MerError)
    assert str(exc) == f"{name}: {exc.reason}"
    assert exc.source == name
    assert exc.reason
    # Matched on the reason alone: tmp_path holds the test id, which the name would match.
    assert re.search(reason or ".", exc.reason)


@pytest.mark.parametrize(("build", "error", "reason"),
                         [p for p in BAD_INPUTS if p.id != "digital-silence"])
def test_load_audio_refuses_the_same_inputs(
    tmp_path: Path, rng: np.random.Generator, config: AnalysisConfig,
    build: Callable[[Path, np.random.Generator], Path | bytes], error: type[AudioError],
    reason: str | None,
) -> None:
    with pytest.raises(error) as info:
        load_audio(build(tmp_path, rng), config)
    assert re.search(reason or ".", info.value.reason)


def test_half_truncated_mp3_decodes_what_is_there(
    tmp_path: Path, config: AnalysisConfig, capfd: pytest.CaptureFixture[str]
) -> None:
    whole = _mp3_bytes(tmp_path)
    path = tmp_path / "half.mp3"
    path.write_bytes(whole[: len(whole) // 2])
    capfd.readouterr()
    result = load_windows(path, config)
    captured = capfd.readouterr()
    assert captured.err == ""  # libmpg123's resync notes must not reach stderr
    _check_windowed(result, config, result.duration)
    # The header promises 12 s; what is really there is about half of it.
    assert 0.4 * SECONDS < result.duration < 0.6 * SECONDS
    assert result.decoder == "soundfile"
    assert np.abs(result.windows).max() > 0.1


@pytest.mark.parametrize("error", [AudioNotFoundError, EmptyAudioError, AudioDecodeError,
                                   AudioTooShortError, SilentAudioError, AudioError])
def test_audio_errors_pickle(error: type[AudioError]) -> None:
    exc = error("song.mp3", "something is wrong with it")
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is error
    assert str(clone) == str(exc) == "song.mp3: something is wrong with it"
    assert (clone.source, clone.reason) == (exc.source, exc.reason)


# ---------------------------------------------------------------------------------------------
# Duration limits


def test_only_first_max_duration_seconds_are_read(
    write_audio: Callable[..., Path], rng: np.random.Generator
) -> None:
    config = AnalysisConfig(max_duration=20.0)
    # 20 s of a quiet chord, then 40 s of loud noise that must never be read.
    quiet = chord(220.0, (0, 4, 7), 20.0, amplitude=0.1)
    loud = (0.9 * np.clip(rng.standard_normal(40 * SR), -1, 1)).astype(np.float32)
    path = write_audio("long.wav", np.concatenate([quiet, loud]), SR)
    result = load_windows(path, config)
    assert result.duration == pytest.approx(20.0)
    assert result.starts[-1] + config.window_seconds <= 20.0 + 1e-9
    assert np.abs(result.windows).max() <= 0.1 + 1e-4
    samples = load_audio(path, config)
    assert len(samples) == 20 * SR


def test_ffmpeg_reads_only_max_duration(
    write_audio: Callable[..., Path], encode_m4a: Callable[..., Path]
) -> None:
    config = AnalysisConfig(max_duration=8.0)
    m4a = encode_m4a(write_audio("long.wav", _tone(440.0, 30.0, SR), SR))
    result = load_windows(m4a, config)
    assert result.decoder == "ffmpeg"
    assert result.duration == pytest.approx(8.0, abs=DURATION_TOL)
    assert result.starts[-1] + config.window_seconds <= 8.0 + DURATION_TOL


@pytest.mark.parametrize(("sr", "channels"), [(SR, 1), (44_100, 2)], ids=["22k-mono", "44k-stereo"])
def test_clip_shorter_than_a_window_fills_every_window(
    write_audio: Callable[..., Path], config: AnalysisConfig, sr: int, channels: int
) -> None:
    assert config.min_duration < 4.0 < config.window_seconds
    path = write_audio("four.wav", _clip(sr, channels)[: 4 * sr], sr)
    result = load_windows(path, config)
    assert result.windows.shape == (config.n_windows, config.window_samples)
    assert result.duration == pytest.approx(4.0)
    np.testing.assert_array_equal(result.starts, 0.0)
    # Filled with audio, not zero padding: the last second is as loud as the first.
    window = result.windows[0]
    rms_head = np.sqrt(np.mean(window[:SR] ** 2))
    rms_tail = np.sqrt(np.mean(window[-SR:] ** 2))
    assert rms_tail > 0.5 * rms_head > 0


# ---------------------------------------------------------------------------------------------
# Window placement


def test_window_starts_spread_first_to_last_sample(config: AnalysisConfig) -> None:
    n_samples = 30 * config.sample_rate
    starts = window_starts(n_samples, config.with_windows(5))
    assert starts.dtype == np.int64
    assert starts[0] == 0
    assert starts[-1] + config.window_samples == n_samples
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 1


@pytest.mark.parametrize("n_samples", [0, 1, 3 * SR, 110_079, 110_080])
def test_window_starts_short_clip_all_zero(config: AnalysisConfig, n_samples: int) -> None:
    assert n_samples <= config.window_samples
    np.testing.assert_array_equal(window_starts(n_samples, config), 0)


@settings(max_examples=200, deadline=None)
@given(n_samples=st.integers(0, 10**8), n_windows=st.integers(1, 64),
       window_frames=st.integers(2, 512))
def test_window_starts_property(n_samples: int, n_windows: int, window_frames: int) -> None:
    config = AnalysisConfig(n_windows=n_windows, window_frames=window_frames)
    starts = window_starts(n_samples, config)
    assert starts.shape == (n_windows,)
    assert starts[0] == 0
    assert (np.diff(starts) >= 0).all()
    assert (starts >= 0).all()
    assert (starts + config.window_samples <= max(n_samples, config.window_samples)).all()


@pytest.mark.parametrize(("outer", "inner", "expected"), [
    (5, 3, [0, 2, 4]), (9, 3, [0, 4, 8]), (3, 3, [0, 1, 2]), (7, 4, [0, 2, 4, 6]),
    (5, 1, [0]), (5, 4, None), (4, 3, None), (3, 5, None)])
def test_nested_windows(outer: int, inner: int, expected: list[int] | None) -> None:
    assert nested_windows(outer, inner) == expected


@settings(max_examples=100, deadline=None)
@given(n_samples=st.integers(0, 10**7), outer=st.integers(1, 33), inner=st.integers(1, 33))
def test_nested_windows_start_where_the_inner_windows_start(n_samples: int, outer: int,
                                                             inner: int) -> None:
    # What the engine relies on to decode the embedding's windows once for every model.
    index = nested_windows(outer, inner)
    if index is not None:
        config = AnalysisConfig()
        wide = window_starts(n_samples, config.with_windows(outer))
        np.testing.assert_array_equal(wide[index],
                                      window_starts(n_samples, config.with_windows(inner)))


def test_select_keeps_the_chosen_windows(config: AnalysisConfig, tmp_path: Path) -> None:
    from tests.synth import mood_clip

    path = tmp_path / "clip.wav"
    sf.write(path, mood_clip("Q2", seconds=30.0, seed=2), SR)
    wide = load_windows(path, config.with_windows(5))
    served = load_windows(path, config)
    chosen = wide.select(nested_windows(5, 3) or [])
    np.testing.assert_array_equal(chosen.windows, served.windows)
    np.testing.assert_array_equal(chosen.starts, served.starts)
    assert (chosen.duration, chosen.source) == (served.duration, served.source)


def test_a_file_name_that_is_not_utf8_decodes_like_any_other(tmp_path: Path,
                                                             config: AnalysisConfig) -> None:
    from tests.synth import mood_clip

    plain = tmp_path / "plain.wav"
    sf.write(plain, mood_clip("Q1", seconds=6.0, seed=5), SR)
    odd = os.fsdecode(bytes(tmp_path) + b"/caf\xe9 \xff.wav")
    shutil.copy(plain, os.fsencode(odd))
    a, b = load_windows(plain, config), load_windows(odd, config)
    assert a.decoder == b.decoder == "soundfile"  # not pushed onto the ffmpeg fallback
    np.testing.assert_array_equal(a.windows, b.windows)
