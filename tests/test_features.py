"""Features: shapes, the log-mel scale, meaningful descriptors, and parity with librosa."""

from __future__ import annotations

from typing import Any

import librosa
import numpy as np
import pytest

from mer_models.config import AnalysisConfig
from mer_models.errors import ParameterError
from mer_models.features import (
    DESCRIPTOR_NAMES,
    Features,
    _hpss,
    clip_descriptors,
    extract_features,
)
from tests.synth import SR, chord, clicks

COLUMN = {name: i for i, name in enumerate(DESCRIPTOR_NAMES)}
#: 20 log10(2): the level change of doubling the amplitude.
SIX_DB = 20.0 * np.log10(2.0)


def _windows(clip: np.ndarray, config: AnalysisConfig) -> np.ndarray:
    """``config.n_windows`` windows spread evenly over a clip, as load_windows places them."""
    starts = np.round(np.linspace(0, len(clip) - config.window_samples, config.n_windows))
    return np.stack([clip[int(s) : int(s) + config.window_samples] for s in starts])


@pytest.fixture(scope="module")
def signals(
    noise: np.ndarray, major_chord: np.ndarray, minor_chord: np.ndarray, click_track: np.ndarray
) -> dict[str, np.ndarray]:
    return {
        "noise": noise,
        "major": major_chord,
        "minor": minor_chord,
        "clicks": click_track,
        "bright": chord(880.0, (0, 4, 7), 6.0),
    }


@pytest.fixture(scope="module")
def features(signals: dict[str, np.ndarray], config: AnalysisConfig) -> dict[str, Features]:
    """Features of every signal, computed once for the module."""
    return {name: extract_features(_windows(y, config), config) for name, y in signals.items()}


def _descriptor(feats: Features, name: str) -> np.ndarray:
    return feats.descriptors[:, COLUMN[name]]


# ---------------------------------------------------------------------------------------------
# Shapes and determinism


def test_descriptor_names_unique() -> None:
    assert len(set(DESCRIPTOR_NAMES)) == len(DESCRIPTOR_NAMES)
    assert all(isinstance(n, str) and n for n in DESCRIPTOR_NAMES)


@pytest.mark.parametrize("name", ["noise", "major", "clicks"])
def test_shapes_and_finite(features: dict[str, Features], config: AnalysisConfig,
                           name: str) -> None:
    feats = features[name]
    assert feats.logmel.shape == (config.n_windows, 128, 216)
    assert feats.logmel.shape == (config.n_windows, config.n_mels, config.window_frames)
    assert feats.logmel.dtype == np.float32
    assert feats.descriptors.shape == (config.n_windows, len(DESCRIPTOR_NAMES))
    assert feats.descriptors.dtype == np.float32
    assert np.isfinite(feats.logmel).all()
    assert np.isfinite(feats.descriptors).all()


def test_single_window(noise: np.ndarray, config: AnalysisConfig) -> None:
    feats = extract_features(noise[None, : config.window_samples], config)
    assert feats.logmel.shape == (1, config.n_mels, config.window_frames)
    assert feats.descriptors.shape == (1, len(DESCRIPTOR_NAMES))


def test_deterministic(signals: dict[str, np.ndarray], features: dict[str, Features],
                       config: AnalysisConfig) -> None:
    again = extract_features(_windows(signals["noise"], config), config)
    np.testing.assert_array_equal(again.logmel, features["noise"].logmel)
    np.testing.assert_array_equal(again.descriptors, features["noise"].descriptors)


# ---------------------------------------------------------------------------------------------
# Log-mel scale


def test_logmel_floor(features: dict[str, Features], config: AnalysisConfig) -> None:
    # The click track is digital silence between bursts: those frames sit exactly at the floor.
    logmel = features["clicks"].logmel
    assert logmel.min() == config.db_floor
    assert logmel.max() > config.db_floor + 40


def test_logmel_custom_floor(click_track: np.ndarray) -> None:
    config = AnalysisConfig(db_floor=-60.0, n_windows=1)
    logmel = extract_features(_windows(click_track, config), config).logmel
    assert logmel.min() == -60.0


def test_logmel_louder_copy_is_six_db_up(
    signals: dict[str, np.ndarray], features: dict[str, Features], config: AnalysisConfig
) -> None:
    quiet = features["major"].logmel
    loud = extract_features(2.0 * _windows(signals["major"], config), config).logmel
    above = quiet > config.db_floor
    assert above.mean() > 0.5
    np.testing.assert_allclose(loud[above] - quiet[above], SIX_DB, atol=1e-3)
    # Where the quiet copy is floored the loud one is never lower than the floor.
    assert (loud[~above] >= config.db_floor).all()


# ---------------------------------------------------------------------------------------------
# Descriptors mean what their names say


@pytest.mark.parametrize("bpm", [120, 100])
def test_tempo_of_clicks(bpm: int, config: AnalysisConfig) -> None:
    # Only the played tempo is accepted, not its octaves (60/240 for 120): a steady click has
    # its strongest periodicity at the beat, and librosa's tempo prior (centred on 120 BPM)
    # favours that level. 100 BPM checks the estimate is not just the prior. Tempo is quantised
    # to whole frame lags (120 BPM falls between 117.5 and 123.0), hence 5 %.
    tempo = _descriptor(extract_features(_windows(clicks(bpm, 6.0), config), config), "tempo")
    np.testing.assert_allclose(tempo, bpm, rtol=0.05)


@pytest.mark.parametrize("root", [220.0, 261.63])
def test_major_chord_has_larger_mode(root: float, config: AnalysisConfig) -> None:
    cfg = config.with_windows(1)
    major = _descriptor(extract_features(_windows(chord(root, (0, 4, 7), 6.0), cfg), cfg), "mode")
    minor = _descriptor(extract_features(_windows(chord(root, (0, 3, 7), 6.0), cfg), cfg), "mode")
    assert major[0] > minor[0] + 0.1


def test_major_minor_mode_on_fixtures(features: dict[str, Features]) -> None:
    assert (_descriptor(features["major"], "mode") > _descriptor(features["minor"], "mode")).all()


def test_clicks_are_percussive(features: dict[str, Features]) -> None:
    clicks_p = _descriptor(features["clicks"], "percussive_ratio")
    chord_p = _descriptor(features["major"], "percussive_ratio")
    assert (clicks_p > chord_p + 0.5).all()
    np.testing.assert_allclose(
        clicks_p + _descriptor(features["clicks"], "harmonic_ratio"), 1.0, rtol=1e-5
    )


def test_noise_is_flatter_than_a_chord(features: dict[str, Features]) -> None:
    noise_f = _descriptor(features["noise"], "spectral_flatness_mean")
    chord_f = _descriptor(features["major"], "spectral_flatness_mean")
    assert (noise_f > 100 * chord_f).all()
    assert (noise_f > 0.3).all()  # white noise: about exp(-euler_gamma) = 0.56


def test_brighter_chord_has_higher_centroid(features: dict[str, Features]) -> None:
    bright = _descriptor(features["bright"], "spectral_centroid_mean")
    dark = _descriptor(features["major"], "spectral_centroid_mean")
    assert (bright > 2 * dark).all()


# ---------------------------------------------------------------------------------------------
# Parity with librosa.feature.spectral_*

LIBROSA_SHAPE = {
    "centroid": lambda S: librosa.feature.spectral_centroid(S=S, sr=SR),
    "bandwidth": lambda S: librosa.feature.spectral_bandwidth(S=S, sr=SR),
    "rolloff": lambda S: librosa.feature.spectral_rolloff(S=S, sr=SR),
    "flatness": lambda S: librosa.feature.spectral_flatness(S=S),
}


def _check_spectral_shape(window: np.ndarray, descriptors: np.ndarray) -> None:
    magnitude = np.abs(librosa.stft(window, n_fft=2048, hop_length=512))
    for feat, reference in LIBROSA_SHAPE.items():
        expected = float(np.mean(reference(magnitude)))
        got = float(descriptors[COLUMN[f"spectral_{feat}_mean"]])
        assert got == pytest.approx(expected, rel=1e-3), feat


@pytest.mark.parametrize("name", ["noise", "major", "clicks", "bright"])
def test_spectral_shape_matches_librosa(
    signals: dict[str, np.ndarray], features: dict[str, Features], config: AnalysisConfig,
    name: str,
) -> None:
    middle = config.n_windows // 2
    window = _windows(signals[name], config)[middle]
    _check_spectral_shape(window, features[name].descriptors[middle])


def test_spectral_bandwidth_of_a_high_tone_matches_librosa(config: AnalysisConfig) -> None:
    t = np.arange(config.window_samples) / SR
    window = (0.3 * np.sin(2 * np.pi * 5000.0 * t)).astype(np.float32)
    _check_spectral_shape(window, extract_features(window[None], config).descriptors[0])


# ---------------------------------------------------------------------------------------------
# Clip summary


def test_clip_descriptors_is_the_window_mean(features: dict[str, Features]) -> None:
    per_window = features["clicks"].descriptors
    clip = clip_descriptors(per_window)
    assert clip.shape == (len(DESCRIPTOR_NAMES),)
    assert clip.dtype == np.float32
    np.testing.assert_allclose(clip, per_window.astype(np.float64).mean(axis=0), rtol=1e-6)


def test_clip_descriptors_of_random_rows(rng: np.random.Generator) -> None:
    rows = rng.standard_normal((7, 5)) * 100
    np.testing.assert_allclose(clip_descriptors(rows), rows.mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(clip_descriptors(rows[:1]), rows[0].astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Settings validation


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": 22_050.0}, "sample_rate"),
        ({"n_fft": -2048}, "n_fft"),
        ({"hop_length": 0}, "hop_length"),
        ({"n_mels": 0}, "n_mels"),
        ({"n_mels": "128"}, "n_mels"),
        ({"window_frames": 0}, "window_frames"),
        ({"n_windows": 0}, "n_windows"),
        ({"fmin": -1.0}, "fmin"),
        ({"fmin": 11_025.0}, "fmin"),
        ({"fmax": 12_000.0}, "fmax"),
        ({"fmin": float("nan")}, "fmin"),
        ({"min_duration": 0.0}, "min_duration"),
        ({"min_duration": 30.0, "max_duration": 20.0}, "max_duration"),
        ({"max_duration": float("nan")}, "max_duration"),
    ],
    ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else None,
)
def test_config_rejects_bad_values(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ParameterError, match=field) as info:
        AnalysisConfig(**kwargs)
    assert isinstance(info.value, ValueError)
    assert repr(next(iter(kwargs.values()))) in str(info.value)  # names the bad value


def test_config_defaults_are_the_documented_window() -> None:
    config = AnalysisConfig()
    assert config.window_samples == 110_080
    assert config.window_seconds == pytest.approx(4.99, abs=0.01)
    assert set(config.preprocessing()) >= {"sample_rate", "n_fft", "hop_length", "n_mels"}
    assert "n_windows" not in config.preprocessing()


def test_hpss_is_librosas() -> None:
    """The in-module HPSS (no librosa.decompose, which imports scikit-learn) is librosa's."""
    rng = np.random.default_rng(0)
    spectrogram = (rng.random((2, 64, 108)) ** 3).astype(np.float32)
    spectrogram[0, :5] = 0.0  # all-zero bands: the soft masks' split_zeros case
    ours = _hpss(spectrogram, 13)
    theirs = librosa.decompose.hpss(spectrogram, kernel_size=13)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)
