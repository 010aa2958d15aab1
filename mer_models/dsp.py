"""The librosa 0.11 computations the engine serves with, in numpy alone.

The features (:mod:`mer_models.features`) and the musicnn front end
(:mod:`mer_models.musicnn`) are defined by librosa's functions. Importing librosa costs a new
process about 2 s on the development machine (``librosa.core`` imports ``scipy.signal``,
which imports ``scipy.stats``; numba then loads librosa's compiled kernels), more than half
of a one-file ``mer classify`` (docs/BENCHMARKS.md). Each function here reproduces one of
them for the arguments the engine uses, with the same numpy operations in the same order and
precision, so training (which calls the same functions) and serving see the same numbers.
``tests/test_dsp.py`` compares every one with librosa itself on noise, tones and music;
librosa is only needed by those tests (the ``dev`` extra): serving and training run without it.
"""

from __future__ import annotations

import functools
import itertools
from typing import Final, TypeVar

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from mer_models.errors import ParameterError

_Scalar = TypeVar("_Scalar", bound=np.generic)

#: ``librosa.onset.onset_strength`` shifts its envelope by ``n_fft // (2 * hop)`` for the
#: centred STFT it assumes; given a spectrogram ``S``, that is its default ``n_fft``.
ONSET_N_FFT: Final = 2048


def hann_window(length: int) -> NDArray[np.float64]:
    """Periodic Hann window, ``scipy.signal.get_window("hann", length)``.

    Parameters
    ----------
    length : int
        Number of samples, positive.

    Returns
    -------
    ndarray, shape (length,), float64
    """
    if length < 1:
        raise ParameterError(f"window length must be positive, got {length}")
    # scipy's general_cosine on length + 1 points, the last dropped (periodic).
    fac = np.linspace(-np.pi, np.pi, length + 1)
    window = np.zeros(length + 1)
    window += 0.5 * np.cos(0 * fac)
    window += 0.5 * np.cos(fac)
    return window[:length]


def frame(x: NDArray[_Scalar], frame_length: int, hop_length: int) -> NDArray[_Scalar]:
    """Frames of the last axis as a view, frames last: ``librosa.util.frame``.

    Parameters
    ----------
    x : ndarray, shape (..., n)
    frame_length, hop_length : int
        Samples per frame and between frame starts.

    Returns
    -------
    ndarray, shape (..., frame_length, n_frames)
        ``n_frames = 1 + (n - frame_length) // hop_length``.
    """
    if x.shape[-1] < frame_length:
        raise ParameterError(f"input is too short (n={x.shape[-1]}) for frame_length="
                             f"{frame_length}")
    windows = sliding_window_view(x, frame_length, axis=-1)[..., ::hop_length, :]
    return np.swapaxes(windows, -1, -2)


def stft(y: NDArray[np.float32], n_fft: int, hop_length: int, *, center: bool = True
         ) -> NDArray[np.complex64]:
    """Short-time Fourier transform, ``librosa.stft`` with a Hann window.

    Parameters
    ----------
    y : ndarray, shape (..., n_samples), float32
    n_fft, hop_length : int
    center : bool
        Pad ``n_fft // 2`` zeros on both sides (librosa's ``pad_mode="constant"``).

    Returns
    -------
    ndarray, shape (..., 1 + n_fft // 2, n_frames), complex64
        As librosa computes it: float32 frames times the float64 window, transformed in
        float64, stored as complex64 in Fortran order.
    """
    if center:
        padding = [(0, 0)] * (y.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        y = np.pad(y, padding, mode="constant")
    elif n_fft > y.shape[-1]:
        raise ParameterError(f"n_fft={n_fft} is too large for an uncentred analysis of "
                             f"{y.shape[-1]} samples")
    frames = np.swapaxes(frame(y, n_fft, hop_length), -1, -2)  # (..., n_frames, n_fft)
    spectrum = np.fft.rfft(hann_window(n_fft) * frames, axis=-1)
    # In librosa's memory layout (Fortran order): the sums over frequency that the features
    # take with matrix products then add in the same order, to the last bit.
    out = np.empty(spectrum.shape[:-2] + spectrum.shape[:-3:-1], dtype=np.complex64, order="F")
    out[...] = np.swapaxes(spectrum, -1, -2)
    return out


def fft_frequencies(sr: float, n_fft: int) -> NDArray[np.float64]:
    """Centre frequency of each STFT bin in Hz, ``librosa.fft_frequencies``.

    Parameters
    ----------
    sr : float
        Sample rate in Hz.
    n_fft : int
        FFT length.

    Returns
    -------
    ndarray, shape (1 + n_fft // 2,), float64
    """
    return np.fft.rfftfreq(n=n_fft, d=1.0 / sr).astype(np.float64, copy=False)


def _hz_to_mel(frequencies: NDArray[np.float64]) -> NDArray[np.float64]:
    # Slaney's auditory toolbox scale: linear below 1 kHz, logarithmic above.
    f_sp = 200.0 / 3
    mels = frequencies / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = frequencies >= min_log_hz
    mels[log_t] = min_log_mel + np.log(frequencies[log_t] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: NDArray[np.float64]) -> NDArray[np.float64]:
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    return freqs


@functools.lru_cache(maxsize=16)
def mel_filterbank(sr: float, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> NDArray[np.float32]:
    """Slaney-style mel filterbank, ``librosa.filters.mel`` (``htk=False, norm="slaney"``).

    Parameters
    ----------
    sr : float
        Sample rate in Hz.
    n_fft, n_mels : int
        FFT length and number of mel bands.
    fmin, fmax : float
        Frequency range in Hz (``fmax`` None: Nyquist).

    Returns
    -------
    ndarray, shape (n_mels, 1 + n_fft // 2), float32
        Read-only (cached per arguments).
    """
    fmax = float(sr) / 2 if fmax is None else fmax
    edges = np.array([fmin, fmax], dtype=np.float64)
    low, high = _hz_to_mel(edges.copy())
    mel_f = _mel_to_hz(np.linspace(low, high, n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_frequencies(sr, n_fft))
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=8)
def chroma_filterbank(sr: float, n_fft: int) -> NDArray[np.float32]:
    """Chroma filterbank from C, ``librosa.filters.chroma`` with its defaults.

    Twelve pitch classes, A440 tuning, Gaussian bumps per bin weighted by a Gaussian over
    octaves centred on octave 5 (half-width 2), columns L2-normalised.

    Parameters
    ----------
    sr, n_fft
        Sample rate in Hz and FFT length, as for :func:`fft_frequencies`.

    Returns
    -------
    ndarray, shape (12, 1 + n_fft // 2), float32
        Read-only (cached per arguments).
    """
    n_chroma = 12
    frequencies = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    frqbins = n_chroma * np.log2(frequencies / (440.0 / 16))
    # The 0 Hz bin: 1.5 octaves below bin 1.
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    distance = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    half = np.round(float(n_chroma) / 2)
    distance = np.remainder(distance + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2 * distance / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    weights = _normalize(weights, norm=2.0, axis=0)
    weights *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - 5.0) / 2) ** 2)), (n_chroma, 1))
    weights = np.roll(weights, -3, axis=0)
    basis = np.ascontiguousarray(weights[:, : int(1 + n_fft / 2)], dtype=np.float32)
    basis.flags.writeable = False
    return basis


def _normalize(x: NDArray[np.floating], norm: float, axis: int) -> NDArray[np.floating]:
    """``librosa.util.normalize(x, norm=norm, axis=axis)``: columns whose norm is below the
    dtype's smallest normal number are left as they are."""
    magnitude = np.abs(x).astype(float)
    if norm == np.inf:
        length = np.max(magnitude, axis=axis, keepdims=True)
    else:
        length = np.sum(magnitude**norm, axis=axis, keepdims=True) ** (1.0 / norm)
    length[length < np.finfo(x.dtype).tiny] = 1.0
    out = np.empty_like(x)
    out[:] = x / length
    return out


def power_to_db(power: NDArray[np.floating], *, amin: float = 1e-10, top_db: float = 80.0
                ) -> NDArray[np.floating]:
    """``librosa.power_to_db(power)``: dB re 1.0, floored ``top_db`` below the maximum.

    Parameters
    ----------
    power : ndarray
        Power values, non-negative.
    amin : float
        Smallest power taken into account.
    top_db : float
        Floor below the maximum of the whole array (not per row or frame).

    Returns
    -------
    ndarray, like ``power``
    """
    log_spec = 10.0 * np.log10(np.maximum(amin, power))  # re 1.0: nothing to subtract
    return np.maximum(log_spec, log_spec.max() - top_db)


def zero_crossing_rate(y: NDArray[np.float32], frame_length: int, hop_length: int
                       ) -> NDArray[np.float64]:
    """``librosa.feature.zero_crossing_rate`` (centred, edge padding, threshold 1e-10).

    Parameters
    ----------
    y : ndarray, shape (..., n_samples), float32
    frame_length, hop_length : int

    Returns
    -------
    ndarray, shape (..., 1, n_frames), float64
        Sign changes between neighbouring samples inside each frame, over ``frame_length``;
        samples within 1e-10 of zero count as positive.
    """
    padding = [(0, 0)] * (y.ndim - 1) + [(frame_length // 2, frame_length // 2)]
    negative = np.pad(y, padding, mode="edge") < -1e-10
    crossings = np.zeros(negative.shape, dtype=np.int64)
    crossings[..., 1:] = negative[..., 1:] != negative[..., :-1]
    total = np.cumsum(crossings, axis=-1)
    n_frames = 1 + (negative.shape[-1] - frame_length) // hop_length
    starts = np.arange(n_frames) * hop_length
    # Crossings at in-frame positions 1 .. frame_length - 1 (the first has no neighbour).
    count = total[..., starts + frame_length - 1] - total[..., starts]
    return (count / frame_length)[..., np.newaxis, :]


def spectral_contrast(magnitude: NDArray[np.float32], sr: float, n_bands: int, *,
                      fmin: float = 200.0, quantile: float = 0.02) -> NDArray[np.float64]:
    """``librosa.feature.spectral_contrast(S=magnitude, sr=sr, n_bands=n_bands)``.

    Octave bands from ``fmin`` (the last one to Nyquist); per band and frame the dB
    difference between the mean of the top and of the bottom ``quantile`` of bins.

    Parameters
    ----------
    magnitude : ndarray, shape (..., 1 + n_fft // 2, n_frames), float32
        STFT magnitudes.
    sr : float
        Sample rate in Hz.
    n_bands : int
        Octave bands above ``fmin`` (one more band covers ``0..fmin``).
    fmin : float
        Upper edge of the first band in Hz.
    quantile : float
        Share of a band's bins averaged for its peak and its valley.

    Returns
    -------
    ndarray, shape (..., n_bands + 1, n_frames), float64
    """
    freq = fft_frequencies(sr, 2 * (magnitude.shape[-2] - 1))
    octa = np.zeros(n_bands + 2)
    octa[1:] = fmin * 2.0 ** np.arange(0, n_bands + 1)
    if np.any(octa[:-1] >= 0.5 * sr):
        raise ParameterError("a contrast band passes Nyquist: lower fmin or n_bands")
    shape = list(magnitude.shape)
    shape[-2] = n_bands + 1
    valley = np.zeros(shape)
    peak = np.zeros_like(valley)
    for k, (f_low, f_high) in enumerate(itertools.pairwise(octa)):
        band = np.logical_and(freq >= f_low, freq <= f_high)
        idx = np.flatnonzero(band)
        if k > 0:
            band[idx[0] - 1] = True
        if k == n_bands:
            band[idx[-1] + 1 :] = True
        sub_band = magnitude[..., band, :]
        if k < n_bands:
            sub_band = sub_band[..., :-1, :]
        count = int(np.maximum(np.rint(quantile * np.sum(band)), 1))
        ordered = np.sort(sub_band, axis=-2)
        valley[..., k, :] = np.mean(ordered[..., :count, :], axis=-2)
        peak[..., k, :] = np.mean(ordered[..., -count:, :], axis=-2)
    return power_to_db(peak) - power_to_db(valley)


def tonnetz(chroma: NDArray[np.float32]) -> NDArray[np.float64]:
    """``librosa.feature.tonnetz(chroma=chroma)``: the six tonal centroid coordinates
    (fifths, minor and major thirds) of the L1-normalised chroma.

    Parameters
    ----------
    chroma : ndarray, shape (..., 12, n_frames), float32

    Returns
    -------
    ndarray, shape (..., 6, n_frames), float64
    """
    dim_map = np.linspace(0, 12, num=chroma.shape[-2], endpoint=False)
    scale = np.asarray([7.0 / 6, 7.0 / 6, 3.0 / 2, 3.0 / 2, 2.0 / 3, 2.0 / 3])
    angles = np.multiply.outer(scale, dim_map)
    angles[::2] -= 0.5
    radii = np.array([1, 1, 1, 1, 0.5, 0.5])
    phi = radii[:, np.newaxis] * np.cos(np.pi * angles)
    result: NDArray[np.float64] = np.einsum("pc,...ci->...pi", phi,
                                            _normalize(chroma, norm=1.0, axis=-2),
                                            optimize=True)
    return result


def onset_strength(spectrogram: NDArray[np.float32], hop_length: int) -> NDArray[np.float32]:
    """``librosa.onset.onset_strength(S=spectrogram, hop_length=hop_length)``.

    The mean over bands of the positive first difference in time, shifted right by
    ``1 + 2048 // (2 * hop_length)`` frames (librosa's lag and centring), as long as the
    spectrogram.

    Parameters
    ----------
    spectrogram : ndarray, shape (..., n_bands, n_frames), float32
        A log-power spectrogram (the engine's log-mel).
    hop_length : int
        STFT hop in samples.

    Returns
    -------
    ndarray, shape (..., n_frames)
    """
    flux = np.maximum(0.0, spectrogram[..., 1:] - spectrogram[..., :-1])
    envelope = np.mean(flux, axis=-2)
    shift = 1 + ONSET_N_FFT // (2 * hop_length)
    padding = [(0, 0)] * (envelope.ndim - 1) + [(shift, 0)]
    padded: NDArray[np.float32] = np.pad(envelope, padding, mode="constant")
    return padded[..., : spectrogram.shape[-1]]


def tempo(envelope: NDArray[np.float32], sr: float, hop_length: int, *,
          start_bpm: float = 120.0, max_tempo: float = 320.0, ac_size: float = 8.0
          ) -> NDArray[np.float64]:
    """``librosa.feature.tempo(onset_envelope=envelope, sr=sr, hop_length=hop_length)``.

    The lag that maximises the frame-averaged autocorrelation tempogram (Hann-windowed
    ``ac_size`` seconds, centred with linear ramps, max-normalised) weighted by a log-normal
    prior around ``start_bpm`` (one octave deviation), below ``max_tempo``.

    Parameters
    ----------
    envelope : ndarray, shape (..., n_frames)
        Onset strength (:func:`onset_strength`).
    sr : float
        Sample rate in Hz.
    hop_length : int
        STFT hop in samples.
    start_bpm, max_tempo : float
        Centre of the prior and the fastest tempo considered, in BPM.
    ac_size : float
        Autocorrelation window in seconds.

    Returns
    -------
    ndarray, shape (..., 1), float64
        Beats per minute.
    """
    win_length = int(ac_size * sr) // hop_length
    n = envelope.shape[-1]
    half = win_length // 2
    padding = [(0, 0)] * (envelope.ndim - 1) + [(half, half)]
    padded = np.pad(envelope, padding, mode="linear_ramp", end_values=[0, 0])
    frames = frame(padded, win_length, 1)[..., :n]
    windowed = frames * hann_window(win_length)[:, np.newaxis]
    n_pad = scipy.fft.next_fast_len(2 * win_length - 1, real=True)
    spectrum = np.fft.rfft(windowed, n=n_pad, axis=-2)
    autocorr = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, n=n_pad, axis=-2)
    tempogram = _normalize(autocorr[..., :win_length, :], norm=np.inf, axis=-2)
    tempogram = np.mean(tempogram, axis=-1, keepdims=True)
    bpms = np.zeros(win_length, dtype=np.float64)
    bpms[0] = np.inf
    bpms[1:] = 60.0 * sr / (hop_length * np.arange(1.0, win_length))
    # One octave of standard deviation; the infinite lag-0 tempo gets -inf.
    logprior = -0.5 * (np.log2(bpms) - np.log2(start_bpm)) ** 2
    logprior[: int(np.argmax(bpms < max_tempo))] = -np.inf
    best = np.argmax(np.log1p(1e6 * tempogram) + logprior[:, np.newaxis], axis=-2)
    return np.take(bpms, best)


def onset_count(envelope: NDArray[np.float32], sr: float, hop_length: int) -> int:
    """Number of onsets ``librosa.onset.onset_detect(onset_envelope=envelope, sr=sr,
    hop_length=hop_length)`` finds in one envelope.

    librosa's peak picking: the envelope scaled to [0, 1]; a frame is an onset where it is
    the maximum of the last 30 ms, at least 0.07 above the mean of the 100 ms around it, and
    more than 30 ms after the previous onset.

    Parameters
    ----------
    envelope : ndarray, shape (n_frames,)
        Onset strength of one window (:func:`onset_strength`).
    sr : float
        Sample rate in Hz.
    hop_length : int
        STFT hop in samples.

    Returns
    -------
    int
    """
    if envelope.ndim != 1:
        raise ParameterError(f"one envelope at a time, got shape {envelope.shape}")
    x = envelope - np.min(envelope)
    x /= np.max(x) + np.finfo(x.dtype).tiny
    if not x.any() or not np.all(np.isfinite(x)):
        return 0
    pre_max = int(np.ceil(0.03 * sr // hop_length))
    pre_avg = int(np.ceil(0.10 * sr // hop_length))
    post_avg = int(np.ceil(0.10 * sr // hop_length + 1))
    wait = int(np.ceil(0.03 * sr // hop_length))
    n = len(x)
    # x[i] == max(x[i - pre_max : i + 1]) (librosa's post_max is one frame: the frame itself).
    left = np.concatenate([np.full(pre_max, -np.inf, dtype=x.dtype), x])
    is_max = x == sliding_window_view(left, pre_max + 1).max(axis=-1)
    # x[i] >= mean(x[i - pre_avg : i + post_avg]) + 0.07, the window cut at both ends.
    total = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    index = np.arange(n)
    lo, hi = np.maximum(index - pre_avg, 0), np.minimum(index + post_avg, n)
    above = x >= (total[hi] - total[lo]) / (hi - lo) + 0.07
    count, free_from = 0, 0
    for i in np.flatnonzero(is_max & above):
        if i >= free_from:
            count += 1
            free_from = int(i) + wait + 1
    return count


def softmask(x: NDArray[np.float32], reference: NDArray[np.float32]) -> NDArray[np.float32]:
    """``librosa.util.softmask(x, reference, power=2, split_zeros=True)``.

    ``x**2 / (x**2 + reference**2)``, computed relative to the larger of the two; 0.5 where
    both are below the dtype's smallest normal number.

    Parameters
    ----------
    x, reference : ndarray, same shape, float32
        Non-negative magnitudes: the mask is ``x``'s share.

    Returns
    -------
    ndarray, like ``x``
    """
    dtype = x.dtype
    z = np.maximum(x, reference).astype(dtype)
    bad = z < np.finfo(dtype).tiny
    z[bad] = 1
    mask = (x / z) ** 2.0
    ref_mask = (reference / z) ** 2.0
    good = ~bad
    mask[good] /= mask[good] + ref_mask[good]
    mask[bad] = 0.5
    return mask
