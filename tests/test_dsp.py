"""mer_models.dsp against librosa itself: the same numbers, to the last bit.

The engine serves without importing librosa (mer_models.dsp says why); training and the
shipped models were made with librosa's functions. These tests hold the two together on
noise, tones, silence-padded audio and a real track of the MIT-licensed demo library.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from mer_models import dsp
from mer_models.errors import ParameterError

SR = 22_050
N_FFT, HOP = 2048, 512
WINDOW = 110_080  # the engine's 5 s analysis window


def _tone_windows() -> np.ndarray:
    t = np.arange(WINDOW) / SR
    tones = [0.5 * np.sin(2 * np.pi * f * t) for f in (110.0, 440.0, 3_000.0)]
    # A tone that starts after 2 s of digital silence: flat envelopes, zero frames.
    late = np.where(t > 2.0, 0.3 * np.sin(2 * np.pi * 660.0 * t), 0.0)
    return np.stack([*tones, late]).astype(np.float32)


def _demo_windows() -> np.ndarray:
    from immich_memories_music import tracks_dir

    track = sorted(Path(tracks_dir()).glob("energetic/*.opus"))[0]
    y, _ = librosa.load(track, sr=SR, duration=20.0)
    return np.stack([y[i * WINDOW : (i + 1) * WINDOW] for i in range(3)]).astype(np.float32)


@pytest.fixture(scope="module", params=["noise", "tones", "demo track", "degenerate"])
def windows(request: pytest.FixtureRequest) -> np.ndarray:
    if request.param == "noise":
        return (0.1 * np.random.default_rng(3).standard_normal((3, WINDOW))).astype(np.float32)
    if request.param == "degenerate":
        # Digital silence, a DC offset, noise below the zero-crossing threshold.
        tiny = 1e-12 * np.random.default_rng(4).standard_normal(WINDOW)
        return np.stack([np.zeros(WINDOW), np.full(WINDOW, 0.1), tiny]).astype(np.float32)
    if request.param == "tones":
        return _tone_windows()
    return _demo_windows()


@pytest.fixture(scope="module")
def magnitude(windows: np.ndarray) -> np.ndarray:
    return np.abs(librosa.stft(windows, n_fft=N_FFT, hop_length=HOP))


@pytest.fixture(scope="module")
def logmel(magnitude: np.ndarray) -> np.ndarray:
    mel = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=128) @ magnitude**2
    return np.maximum(10 * np.log10(np.maximum(mel, 1e-30)), -80.0).astype(np.float32)


def test_the_window_and_filterbanks_are_librosas() -> None:
    np.testing.assert_array_equal(dsp.hann_window(2048), scipy.signal.get_window("hann", 2048))
    np.testing.assert_array_equal(dsp.hann_window(343), scipy.signal.get_window("hann", 343))
    for sr, n_fft, n_mels, fmin, fmax in [(SR, N_FFT, 128, 0.0, SR / 2),
                                          (16_000, 512, 96, 0.0, 8_000.0),
                                          (SR, N_FFT, 64, 300.0, 8_000.0)]:
        np.testing.assert_array_equal(
            dsp.mel_filterbank(sr, n_fft, n_mels, fmin, fmax),
            librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax))
    np.testing.assert_array_equal(dsp.chroma_filterbank(SR, N_FFT),
                                  librosa.filters.chroma(sr=SR, n_fft=N_FFT))
    np.testing.assert_array_equal(dsp.fft_frequencies(SR, N_FFT),
                                  librosa.fft_frequencies(sr=SR, n_fft=N_FFT))


def test_the_filterbanks_are_cached_read_only() -> None:
    basis = dsp.mel_filterbank(SR, N_FFT, 128)
    assert basis is dsp.mel_filterbank(SR, N_FFT, 128)
    with pytest.raises(ValueError, match="read-only"):
        basis[0, 0] = 1.0


def test_stft_is_librosas_in_value_and_layout(windows: np.ndarray) -> None:
    ours = dsp.stft(windows, N_FFT, HOP)
    theirs = librosa.stft(windows, n_fft=N_FFT, hop_length=HOP)
    np.testing.assert_array_equal(ours, theirs)
    assert ours.dtype == theirs.dtype and ours.flags.f_contiguous == theirs.flags.f_contiguous
    # musicnn's front end: 16 kHz, uncentred; and a single 1-D signal.
    np.testing.assert_array_equal(
        dsp.stft(windows[0], 512, 256, center=False),
        librosa.stft(windows[0], n_fft=512, hop_length=256, center=False))


def test_stft_refuses_a_signal_shorter_than_one_uncentred_frame() -> None:
    with pytest.raises(ParameterError, match="too large"):
        dsp.stft(np.zeros(100, dtype=np.float32), 512, 256, center=False)


def test_frame_wise_descriptors_are_librosas(windows: np.ndarray, magnitude: np.ndarray
                                             ) -> None:
    np.testing.assert_array_equal(
        dsp.zero_crossing_rate(windows, N_FFT, HOP),
        librosa.feature.zero_crossing_rate(windows, frame_length=N_FFT, hop_length=HOP))
    np.testing.assert_array_equal(
        dsp.spectral_contrast(magnitude, SR, 5),
        librosa.feature.spectral_contrast(S=magnitude, sr=SR, n_bands=5))
    chroma = librosa.filters.chroma(sr=SR, n_fft=N_FFT) @ magnitude**2
    chroma = chroma / (chroma.max(axis=1, keepdims=True) + 1e-12)
    np.testing.assert_array_equal(dsp.tonnetz(chroma), librosa.feature.tonnetz(chroma=chroma))


def test_onsets_and_tempo_are_librosas(logmel: np.ndarray) -> None:
    envelope = librosa.onset.onset_strength(S=logmel, sr=SR, hop_length=HOP)
    np.testing.assert_array_equal(dsp.onset_strength(logmel, HOP), envelope)
    np.testing.assert_array_equal(
        dsp.tempo(envelope, SR, HOP),
        librosa.feature.tempo(onset_envelope=envelope, sr=SR, hop_length=HOP))
    assert [dsp.onset_count(e, SR, HOP) for e in envelope] == [
        len(librosa.onset.onset_detect(onset_envelope=e, sr=SR, hop_length=HOP))
        for e in envelope]


def test_onset_count_of_a_flat_envelope_is_zero() -> None:
    assert dsp.onset_count(np.zeros(216, dtype=np.float32), SR, HOP) == 0
    assert dsp.onset_count(np.full(216, 3.0, dtype=np.float32), SR, HOP) == 0
    with pytest.raises(ParameterError, match="one envelope"):
        dsp.onset_count(np.zeros((2, 216), dtype=np.float32), SR, HOP)


def test_onset_count_keeps_librosas_wait_between_onsets() -> None:
    # Peaks every other frame: librosa's 30 ms wait (one frame here) keeps every one of them;
    # adjacent peaks would be merged. Compared on an envelope built to sit on the edges.
    envelope = np.zeros(200, dtype=np.float32)
    envelope[10:190:2] = 1.0
    envelope[101] = 1.0
    expected = len(librosa.onset.onset_detect(onset_envelope=envelope, sr=SR, hop_length=HOP))
    assert dsp.onset_count(envelope, SR, HOP) == expected


def test_softmask_is_librosas(rng: np.random.Generator) -> None:
    x = rng.random((2, 40, 50)).astype(np.float32)
    reference = rng.random((2, 40, 50)).astype(np.float32)
    x[0, :5] = 0.0
    reference[0, :5] = 0.0  # both silent: split 0.5 / 0.5
    for a, b in [(x, reference), (reference, x)]:
        np.testing.assert_array_equal(
            dsp.softmask(a, b), librosa.util.softmask(a, b, power=2.0, split_zeros=True))


def test_serving_does_not_import_librosa(tmp_path: Path) -> None:
    # The point of mer_models.dsp: a new process classifies with the shipped models (the
    # musicnn front end included) without librosa, scipy.signal, numba (about 2 s of a
    # cold start) or scikit-learn. Checked in a fresh interpreter.
    audio = tmp_path / "clip.wav"
    sf.write(audio, _tone_windows()[0], SR)
    code = (
        "import sys\n"
        "from mer_models.engine import MoodEngine\n"
        f"result = MoodEngine().classify({str(audio)!r})\n"
        "assert len(result.models) == 3, result.models\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'librosa', 'numba', 'sklearn'}),"
        " 'scipy.signal' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.split("\n")[-2] == "[] False", out.stdout + out.stderr
