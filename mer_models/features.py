"""Model inputs from decoded windows: log-mel spectrograms and audio descriptors.

This module is the single definition of preprocessing. Training (``train/``) and serving
(:class:`mer_models.engine.MoodEngine`) both call :func:`extract_features`, and both models
share one STFT per window: the log-mel input of the CLDNN and every spectral descriptor are
derived from the same power spectrogram. The librosa functions that define the descriptors
run as their numpy equivalents in :mod:`mer_models.dsp` (a new process does not import
librosa to classify; the equivalence is tested against librosa).

Descriptors are computed per window (:data:`DESCRIPTOR_NAMES` lists them, in order) and
summarised per clip by :func:`clip_descriptors`, the input of the stacking ensemble.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from mer_models import dsp
from mer_models.audio import MAX_PEAK
from mer_models.config import AnalysisConfig
from mer_models.errors import ParameterError

# Krumhansl-Kessler key profiles (probe-tone ratings), C major / C minor.
_MAJOR_PROFILE: Final = np.array(
    [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]
)
_MINOR_PROFILE: Final = np.array(
    [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]
)
_N_MFCC: Final = 20
_N_CONTRAST_BANDS: Final = 5  # 200 Hz * 2**6 would pass Nyquist at 22,050 Hz
_HPSS_KERNEL: Final = 13


def _names() -> tuple[str, ...]:
    names: list[str] = []
    names += [f"mfcc{i}_mean" for i in range(_N_MFCC)]
    names += [f"mfcc{i}_std" for i in range(_N_MFCC)]
    names += [f"mfcc{i}_delta_std" for i in range(13)]
    for feat in ("centroid", "bandwidth", "rolloff", "flatness", "flux", "zcr"):
        names += [f"spectral_{feat}_mean", f"spectral_{feat}_std"]
    for band in range(_N_CONTRAST_BANDS + 1):
        names += [f"contrast{band}_mean", f"contrast{band}_std"]
    names += [f"chroma_key_rel{i}" for i in range(12)]
    names += ["key_strength", "major_strength", "minor_strength", "mode", "chroma_entropy",
              "chroma_flux"]
    names += [f"tonnetz{i}_mean" for i in range(6)] + [f"tonnetz{i}_std" for i in range(6)]
    names += ["tempo", "onset_rate", "onset_strength_mean", "onset_strength_std",
              "pulse_clarity"]
    names += ["rms_db_mean", "rms_db_std", "dynamic_range_db", "low_energy_ratio"]
    names += ["harmonic_ratio", "percussive_ratio", "hp_balance_db"]
    return tuple(names)


#: Bumped whenever a descriptor's computation changes, so caches keyed on it are rebuilt.
FEATURES_VERSION: Final = 1

#: Names of the per-window descriptor vector, in order.
DESCRIPTOR_NAMES: Final[tuple[str, ...]] = _names()


@dataclass(frozen=True)
class Features:
    """Model inputs for the windows of one clip.

    Attributes
    ----------
    logmel : ndarray, shape (n_windows, n_mels, window_frames), float32
        Log-mel power spectrograms in dB (re 1.0), floored at ``config.db_floor``.
    descriptors : ndarray, shape (n_windows, n_descriptors), float32
        One descriptor vector per window, columns named by :data:`DESCRIPTOR_NAMES`.
    """

    logmel: NDArray[np.float32]
    descriptors: NDArray[np.float32]


def extract_features(windows: NDArray[np.float32], config: AnalysisConfig) -> Features:
    """Compute the log-mel spectrogram and the descriptors of every window.

    Parameters
    ----------
    windows : ndarray, shape (n_windows, window_samples), float32
        Mono samples at ``config.sample_rate``, as returned by
        :func:`mer_models.audio.load_windows`.
    config : AnalysisConfig
        Preprocessing settings.

    Returns
    -------
    Features
        Every value finite.

    Raises
    ------
    ParameterError
        ``windows`` is not of that shape, or holds samples that are not finite or that reach
        :data:`mer_models.audio.MAX_PEAK` (the decoder refuses such audio).
    """
    windows = _checked_windows(windows, config)
    stft = dsp.stft(windows, config.n_fft, config.hop_length)
    magnitude = np.abs(stft)
    power = magnitude**2
    mel_basis = dsp.mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin,
                                   config.fmax)
    mel = mel_basis @ power  # (n_windows, n_mels, frames)
    logmel = _to_db(mel, config.db_floor)
    descriptors = _descriptors(windows, magnitude, power, mel, logmel, config)
    return Features(logmel.astype(np.float32), descriptors.astype(np.float32))


def _checked_windows(windows: NDArray[np.floating], config: AnalysisConfig
                     ) -> NDArray[np.float32]:
    array = np.asarray(windows)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != config.window_samples:
        raise ParameterError(f"windows must have shape (n_windows >= 1, "
                             f"{config.window_samples}), got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype,
                                                                         np.integer):
        raise ParameterError(f"windows must hold real samples, got dtype {array.dtype}")
    # In float64: a float32 cast would turn 1e39 into infinity and the message into nonsense.
    peak = float(np.max(np.abs(array.astype(np.float64))))
    if not np.isfinite(peak):
        raise ParameterError("windows hold samples that are not finite (NaN or infinity)")
    if peak > MAX_PEAK:
        raise ParameterError(f"windows hold samples reaching {peak:.3g}, beyond {MAX_PEAK:g} "
                             "(full scale is 1.0)")
    return np.ascontiguousarray(array, dtype=np.float32)


def clip_descriptors(descriptors: NDArray[np.floating]) -> NDArray[np.float32]:
    """Summarise per-window descriptors into the clip vector the ensemble sees.

    Parameters
    ----------
    descriptors : ndarray, shape (n_windows, n_descriptors)

    Returns
    -------
    ndarray, shape (n_descriptors,), float32
        The mean over windows.
    """
    return np.asarray(descriptors, dtype=np.float64).mean(axis=0).astype(np.float32)


def _to_db(power: NDArray[np.floating], floor_db: float) -> NDArray[np.float32]:
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-30)), floor_db).astype(np.float32)


def _mean_std(x: NDArray[np.floating]) -> NDArray[np.float64]:
    """Mean and standard deviation over time of a (n_windows, n_rows, frames) array.

    Returns (n_windows, 2 * n_rows): all the means, then all the standard deviations.
    """
    x = np.asarray(x, dtype=np.float64)
    return np.concatenate([x.mean(axis=-1), x.std(axis=-1)], axis=-1)


def _interleaved_mean_std(x: NDArray[np.floating]) -> NDArray[np.float64]:
    """Like :func:`_mean_std` but ordered row0_mean, row0_std, row1_mean, ..."""
    x = np.asarray(x, dtype=np.float64)
    return np.stack([x.mean(axis=-1), x.std(axis=-1)], axis=-1).reshape(len(x), -1)


def _descriptors(
    windows: NDArray[np.float32],
    magnitude: NDArray[np.float32],
    power: NDArray[np.float32],
    mel: NDArray[np.float32],
    logmel: NDArray[np.float32],
    config: AnalysisConfig,
) -> NDArray[np.float64]:
    """All descriptors of all windows, shape (n_windows, len(DESCRIPTOR_NAMES))."""
    sr = config.sample_rate
    freqs = dsp.fft_frequencies(sr, config.n_fft)
    parts: list[NDArray[np.float64]] = []

    # Timbre: MFCCs from the same log-mel the CLDNN sees.
    mfcc = scipy.fft.dct(logmel, axis=1, type=2, norm="ortho")[:, :_N_MFCC]
    parts.append(_mean_std(mfcc))
    parts.append(np.diff(mfcc[:, :13], axis=-1).std(axis=-1))
    spectral = np.concatenate([
        _spectral_shape(magnitude, power, freqs),
        np.maximum(np.diff(logmel, axis=-1, prepend=logmel[..., :1]), 0.0).mean(
            axis=1, keepdims=True),
        dsp.zero_crossing_rate(windows, config.n_fft, config.hop_length),
    ], axis=1)
    parts.append(_interleaved_mean_std(spectral))
    contrast = dsp.spectral_contrast(magnitude, sr, _N_CONTRAST_BANDS)
    parts.append(_interleaved_mean_std(contrast))
    parts.append(_tonal_descriptors(power, config))
    parts.append(_rhythm_descriptors(logmel, config))
    parts.append(_dynamics_descriptors(power, config))
    parts.append(_hpss_descriptors(mel))
    return np.concatenate(parts, axis=1)


def _spectral_shape(
    magnitude: NDArray[np.float32], power: NDArray[np.float32], freqs: NDArray[np.floating]
) -> NDArray[np.float32]:
    """Centroid, bandwidth, 85 % roll-off (Hz) and flatness per frame: (n, 4, frames).

    The definitions of ``librosa.feature.spectral_*``, computed in one pass over the shared
    magnitude spectrogram: librosa's versions each re-normalise and re-validate the whole
    array, which cost 4x more than the arithmetic here (measured, bench/classify.py profile).
    """
    f = freqs.astype(np.float64)
    # Sums over the frequency axis are matrix products with a vector: numpy's strided
    # reductions over axis 1 cost 5-10x more here (measured, docs/BENCHMARKS.md).
    ones = np.ones(magnitude.shape[1], dtype=np.float64)
    # Moments in float64: E[f^2] - E[f]^2 cancels badly in float32 for narrow high tones.
    mag64 = magnitude.astype(np.float64)
    total = np.maximum(ones @ mag64, np.finfo(np.float64).tiny)  # (n, frames)
    centroid = (f @ mag64) / total
    second_moment = ((f * f) @ mag64) / total
    bandwidth = np.sqrt(np.maximum(second_moment - centroid**2, 0.0))
    cumulative = np.cumsum(magnitude, axis=1)
    below = cumulative < 0.85 * cumulative[:, -1:, :]
    rolloff_bin = (ones.astype(np.float32) @ below.astype(np.float32)).astype(np.int64)
    rolloff = f[np.minimum(rolloff_bin, len(f) - 1)]
    floored = np.maximum(power, np.float32(1e-10)).astype(np.float64)
    flatness = np.exp((ones @ np.log(floored)) / len(ones)) / ((ones @ floored) / len(ones))
    return np.stack([centroid, bandwidth, rolloff, flatness], axis=1)


def _tonal_descriptors(power: NDArray[np.float32], config: AnalysisConfig) -> NDArray[np.float64]:
    chroma = dsp.chroma_filterbank(config.sample_rate, config.n_fft) @ power  # (n, 12, frames)
    chroma = chroma / (chroma.max(axis=1, keepdims=True) + 1e-12)
    profile = chroma.mean(axis=-1).astype(np.float64)  # (n, 12)
    # Correlation of each window's pitch-class profile with the 24 rotated key profiles.
    keys = np.stack([np.roll(_MAJOR_PROFILE, k) for k in range(12)]
                    + [np.roll(_MINOR_PROFILE, k) for k in range(12)])  # (24, 12)
    keys = (keys - keys.mean(axis=1, keepdims=True)) / keys.std(axis=1, keepdims=True)
    centred = profile - profile.mean(axis=1, keepdims=True)
    scale = centred.std(axis=1, keepdims=True)
    corr = (centred / np.where(scale > 0, scale, 1.0)) @ keys.T / 12.0  # (n, 24)
    major, minor = corr[:, :12].max(axis=1), corr[:, 12:].max(axis=1)
    tonic = np.argmax(corr, axis=1) % 12
    key_relative = np.stack([np.roll(p, -t) for p, t in zip(profile, tonic, strict=True)])
    key_relative /= key_relative.sum(axis=1, keepdims=True) + 1e-12
    entropy = -(key_relative * np.log2(key_relative + 1e-12)).sum(axis=1)
    chroma_flux = np.abs(np.diff(chroma, axis=-1)).sum(axis=1).mean(axis=-1)
    tonnetz = dsp.tonnetz(chroma)
    return np.concatenate([
        key_relative,
        np.stack([np.maximum(major, minor), major, minor, major - minor, entropy, chroma_flux],
                 axis=1),
        _mean_std(tonnetz),
    ], axis=1)


def _rhythm_descriptors(logmel: NDArray[np.float32], config: AnalysisConfig) -> NDArray[np.float64]:
    sr, hop = config.sample_rate, config.hop_length
    envelope = dsp.onset_strength(logmel, hop)  # (n, frames)
    tempo = dsp.tempo(envelope, sr, hop).reshape(-1)
    seconds = logmel.shape[-1] * hop / sr
    onset_rate = np.array([dsp.onset_count(env, sr, hop) / seconds for env in envelope])
    centred = envelope - envelope.mean(axis=-1, keepdims=True)
    n = centred.shape[-1]
    spectrum = np.fft.rfft(centred, n=2 * n, axis=-1)
    autocorr = np.fft.irfft(np.abs(spectrum) ** 2, axis=-1)[:, :n]
    lo, hi = int(0.25 * sr / hop), int(2.0 * sr / hop)  # beat periods of 30-240 BPM
    clarity = autocorr[:, lo:hi].max(axis=-1) / np.maximum(autocorr[:, 0], 1e-12)
    return np.stack([tempo, onset_rate, envelope.mean(axis=-1), envelope.std(axis=-1),
                     clarity], axis=1)


def _dynamics_descriptors(power: NDArray[np.float32], config: AnalysisConfig
                          ) -> NDArray[np.float64]:
    # Frame RMS from the power spectrum (Parseval), as librosa.feature.rms(S=...) computes it.
    mean_power = np.ones(power.shape[1], dtype=np.float32) @ power / power.shape[1]
    rms_db = _to_db(mean_power * 2 / config.n_fft**2, -120.0).astype(np.float64)
    p95, p5 = np.percentile(rms_db, [95, 5], axis=-1)
    low_energy = (rms_db < rms_db.mean(axis=-1, keepdims=True)).mean(axis=-1)
    return np.stack([rms_db.mean(axis=-1), rms_db.std(axis=-1), p95 - p5, low_energy], axis=1)


def _hpss(spectrogram: NDArray[np.float32], kernel: int
          ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``librosa.decompose.hpss(spectrogram, kernel_size=kernel)`` (margin 1, power 2).

    The same median filters and soft masks (:func:`mer_models.dsp.softmask`), without
    librosa (:mod:`mer_models.dsp` says why). scipy.ndimage is imported here, at first use.
    """
    from scipy.ndimage import median_filter

    harmonic_shape = [1] * spectrogram.ndim
    harmonic_shape[-1] = kernel
    percussive_shape = [1] * spectrogram.ndim
    percussive_shape[-2] = kernel
    harmonic = median_filter(spectrogram, size=harmonic_shape, mode="reflect")
    percussive = median_filter(spectrogram, size=percussive_shape, mode="reflect")
    harmonic_mask = dsp.softmask(harmonic, percussive)
    percussive_mask = dsp.softmask(percussive, harmonic)
    return spectrogram * harmonic_mask, spectrogram * percussive_mask


def _hpss_descriptors(mel: NDArray[np.float32]) -> NDArray[np.float64]:
    # Median-filter HPSS on the mel spectrogram pooled 2x in frequency and time: we want a
    # balance, not a separation, and the coarse grid is 4x cheaper than the full one.
    n, bands, frames = mel.shape
    pooled = mel[..., : frames // 2 * 2].reshape(n, bands // 2, 2, frames // 2, 2).mean(axis=(2, 4))
    harmonic, percussive = _hpss(pooled, _HPSS_KERNEL)
    h = harmonic.sum(axis=(1, 2)).astype(np.float64) + 1e-12
    p = percussive.sum(axis=(1, 2)).astype(np.float64) + 1e-12
    return np.stack([h / (h + p), p / (h + p), 10.0 * np.log10(h / p)], axis=1)
