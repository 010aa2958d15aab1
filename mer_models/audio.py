"""Decoding: any common audio format, from a path or bytes, to mono windows at the analysis rate.

The fast path is libsndfile (through soundfile): WAV, FLAC, Ogg Vorbis/Opus and MP3, reading
only the analysed windows by seeking. Anything libsndfile cannot open (AAC/M4A, most video
containers) goes through an ``ffmpeg`` subprocess, which is slower (about 0.1 s to start) and
so only the fallback. Only the first ``max_duration`` seconds of an input are ever read.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, TypeAlias

import numpy as np
import soundfile as sf
import soxr
from numpy.typing import NDArray

from mer_models.config import AnalysisConfig
from mer_models.errors import (
    AudioDecodeError,
    AudioNotFoundError,
    AudioTooShortError,
    EmptyAudioError,
    SilentAudioError,
)

AudioSource: TypeAlias = str | os.PathLike[str] | bytes

#: Peak level (linear, full scale 1.0) under which the analysed audio counts as silence (-80 dBFS).
SILENCE_PEAK = 1e-4
#: Peak level above which decoded samples are garbage, not loud audio (+120 dBFS). Float files
#: may exceed full scale, some by the int16 range (3.3e4) when written unnormalised; features
#: stay finite up to here and overflow float32 far above it.
MAX_PEAK = 1e6
#: Seconds an ffmpeg decode may take before it is abandoned.
FFMPEG_TIMEOUT_S = 60.0

_stderr_lock = threading.Lock()


@dataclass(frozen=True)
class WindowedAudio:
    """The analysed windows of one input.

    Attributes
    ----------
    windows : ndarray, shape (n_windows, window_samples), float32
        Mono samples at the analysis rate, one row per window.
    starts : ndarray, shape (n_windows,), float64
        Start of each window in seconds from the beginning of the input.
    duration : float
        Duration of the input in seconds (capped at ``max_duration``).
    source : str
        Name of the input, for messages.
    decoder : str
        ``"soundfile"`` or ``"ffmpeg"``.
    """

    windows: NDArray[np.float32]
    starts: NDArray[np.float64]
    duration: float
    source: str
    decoder: str

    def select(self, index: Sequence[int]) -> WindowedAudio:
        """The same input with only the windows at ``index`` (in that order)."""
        return replace(self, windows=self.windows[list(index)], starts=self.starts[list(index)])


def source_name(source: AudioSource) -> str:
    """A short human-readable name for an input."""
    if isinstance(source, bytes | bytearray):
        return f"<{len(source)} bytes>"
    return os.fspath(source)


def nested_windows(n_outer: int, n_inner: int) -> list[int] | None:
    """Which of ``n_outer`` windows are the ``n_inner`` ones, when they coincide.

    Windows are spread with :func:`window_starts` (first at the start, last at the end), so
    the ``n_inner`` positions are among the ``n_outer`` ones whenever ``n_outer - 1`` is a
    multiple of ``n_inner - 1``: 3 windows are windows 0, 2 and 4 of 5.

    Returns
    -------
    list of int or None
        Indices into the ``n_outer`` windows, or None when the positions differ.
    """
    if n_inner == 1:
        return [0]
    step, rest = divmod(n_outer - 1, n_inner - 1)
    if rest or step < 1:
        return None
    return list(range(0, n_outer, step))


def window_starts(n_samples: int, config: AnalysisConfig) -> NDArray[np.int64]:
    """Start samples of ``config.n_windows`` windows spread evenly over ``n_samples``.

    The first window starts at sample 0 and the last ends at the last sample; with a clip
    shorter than one window every window starts at 0.

    Parameters
    ----------
    n_samples : int
        Length of the clip in samples at the analysis rate.
    config : AnalysisConfig
        Window length and count.

    Returns
    -------
    ndarray, shape (n_windows,), int64
    """
    span = max(n_samples - config.window_samples, 0)
    return np.round(np.linspace(0, span, config.n_windows)).astype(np.int64)


def load_windows(
    source: AudioSource, config: AnalysisConfig | None = None, *, name: str | None = None
) -> WindowedAudio:
    """Decode the analysis windows of an input.

    Parameters
    ----------
    source : str, path-like or bytes
        An audio file path or the file's bytes (any format libsndfile or ffmpeg reads).
    config : AnalysisConfig, optional
        Sample rate, window length and count, duration limits.
    name : str, optional
        Name used in messages instead of the path (useful for bytes).

    Returns
    -------
    WindowedAudio

    Raises
    ------
    AudioNotFoundError
        The path does not exist or is a directory.
    EmptyAudioError
        The input has no bytes or decodes to no samples.
    AudioDecodeError
        No decoder could read the input.
    AudioTooShortError
        The input is shorter than ``config.min_duration``.
    SilentAudioError
        The analysed audio peaks below -80 dBFS.

    Notes
    -----
    Samples that are not finite (NaN, infinity) or that reach :data:`MAX_PEAK` are refused
    with an :class:`AudioDecodeError`: they are corrupt data, and the features of such
    windows would not be finite.
    """
    config = config or AnalysisConfig()
    label = name or source_name(source)
    _check_input(source, label)
    try:
        result = _windows_with_soundfile(source, label, config)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        sf_reason = str(exc).split(": ", 1)[-1] if str(exc) else type(exc).__name__
        samples = _decode_with_ffmpeg(source, label, config, sf_reason)
        result = _windows_from_samples(samples, label, config, decoder="ffmpeg")
    if _check_level(result.windows, label) < SILENCE_PEAK:
        raise SilentAudioError(label, "the audio is silent (peak below -80 dBFS)")
    return result


def load_audio(
    source: AudioSource, config: AnalysisConfig | None = None, *, name: str | None = None
) -> NDArray[np.float32]:
    """Decode a whole input (at most ``max_duration`` seconds) to mono at the analysis rate.

    Parameters
    ----------
    source : str, path-like or bytes
        An audio file path or its bytes.
    config : AnalysisConfig, optional
        Sample rate and duration limits.
    name : str, optional
        Name used in messages.

    Returns
    -------
    ndarray, shape (n_samples,), float32

    Raises
    ------
    AudioError
        As :func:`load_windows`, except that silence is not checked.
    """
    config = config or AnalysisConfig()
    label = name or source_name(source)
    _check_input(source, label)
    try:
        with quiet_stderr(), _open_soundfile(source) as snd:
            limit = int(config.max_duration * snd.samplerate)
            data = snd.read(min(snd.frames, limit) if snd.frames > 0 else limit,
                            dtype="float32", always_2d=True)
            native_sr = snd.samplerate
        samples = _to_mono_resampled(data, native_sr, config.sample_rate)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        samples = _decode_with_ffmpeg(source, label, config, str(exc))
    _check_duration(len(samples), label, config)
    _check_level(samples, label)
    return samples


def load_window_pair(source: AudioSource, config: AnalysisConfig, wide: AnalysisConfig, *,
                     name: str | None = None) -> tuple[WindowedAudio, NDArray[np.float32]]:
    """The windows of ``config`` and those of ``wide`` (the same settings, more windows).

    Decoded once when ``config``'s windows are among ``wide``'s (:func:`nested_windows`: 3 of
    5), else twice.

    Returns
    -------
    tuple
        ``config``'s :class:`WindowedAudio` and ``wide``'s windows.

    Raises
    ------
    AudioError
        As :func:`load_windows`.
    """
    if wide.n_windows == config.n_windows:
        audio = load_windows(source, config, name=name)
        return audio, audio.windows
    index = nested_windows(wide.n_windows, config.n_windows)
    if index is not None:
        decoded = load_windows(source, wide, name=name)
        return decoded.select(index), decoded.windows
    return (load_windows(source, config, name=name),
            load_windows(source, wide, name=name).windows)


def _check_level(samples: NDArray[np.float32], label: str) -> float:
    """The peak of decoded samples, refusing corrupt ones (not finite, far past full scale)."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if not np.isfinite(peak):
        raise AudioDecodeError(label, "decoded samples are not finite (NaN or infinity): "
                                      "corrupt float data")
    if peak > MAX_PEAK:
        raise AudioDecodeError(label, f"decoded samples reach {peak:.3g}, far beyond full "
                                      "scale (1.0): corrupt float data")
    return peak


def _check_input(source: AudioSource, label: str) -> None:
    if isinstance(source, bytes | bytearray):
        if not source:
            raise EmptyAudioError(label, "no audio bytes were given")
        return
    path = Path(source)
    if path.is_dir():
        raise AudioNotFoundError(label, "is a directory, not an audio file")
    if not path.is_file():
        raise AudioNotFoundError(label, "no such file")
    if path.stat().st_size == 0:
        raise EmptyAudioError(label, "the file is empty (0 bytes)")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr (libmpg123 prints resync notes on seeks and damaged frames).

    File descriptor 2 is process-wide, so the swap is serialised with a lock.
    """
    with _stderr_lock:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to silence
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def _open_soundfile(source: AudioSource) -> sf.SoundFile:
    # A path goes in as bytes: soundfile encodes a str path strictly, so a file name that is
    # not valid UTF-8 (held as surrogate escapes) would not open.
    handle: bytes | BinaryIO = (
        io.BytesIO(source) if isinstance(source, bytes | bytearray)
        else os.fsencode(os.fspath(source))
    )
    return sf.SoundFile(handle)


def _windows_with_soundfile(
    source: AudioSource, label: str, config: AnalysisConfig
) -> WindowedAudio:
    with quiet_stderr(), _open_soundfile(source) as snd:
        native_sr = snd.samplerate
        if snd.frames <= 0 or not snd.seekable():
            data = snd.read(int(config.max_duration * native_sr), dtype="float32",
                            always_2d=True)
            samples = _to_mono_resampled(data, native_sr, config.sample_rate)
            return _windows_from_samples(samples, label, config, decoder="soundfile")
        n_native = min(snd.frames, int(config.max_duration * native_sr))
        n_samples = int(n_native * config.sample_rate / native_sr)
        _check_duration(n_samples, label, config)
        starts = window_starts(n_samples, config)
        native_len = int(np.ceil(config.window_samples * native_sr / config.sample_rate)) + 16
        windows = np.empty((config.n_windows, config.window_samples), dtype=np.float32)
        expected = min(native_len - 16, n_native)
        for i, start in enumerate(starts):
            snd.seek(int(start * native_sr / config.sample_rate))
            chunk = snd.read(min(native_len, n_native), dtype="float32", always_2d=True)
            if len(chunk) < expected:
                # The header promised more than the file holds (a truncated download):
                # read what is really there and place the windows over that.
                snd.seek(0)
                data = snd.read(n_native, dtype="float32", always_2d=True)
                samples = _to_mono_resampled(data, native_sr, config.sample_rate)
                return _windows_from_samples(samples, label, config, decoder="soundfile")
            windows[i] = _fit(_to_mono_resampled(chunk, native_sr, config.sample_rate),
                              config.window_samples)
    if not np.isfinite(windows).all():
        raise AudioDecodeError(label, "decoded samples are not finite")
    return WindowedAudio(windows, starts / config.sample_rate,
                         n_samples / config.sample_rate, label, "soundfile")


def _windows_from_samples(
    samples: NDArray[np.float32], label: str, config: AnalysisConfig, *, decoder: str
) -> WindowedAudio:
    _check_duration(len(samples), label, config)
    starts = window_starts(len(samples), config)
    windows = np.stack([_fit(samples[s : s + config.window_samples], config.window_samples)
                        for s in starts])
    return WindowedAudio(windows, starts / config.sample_rate,
                         len(samples) / config.sample_rate, label, decoder)


def _fit(chunk: NDArray[np.float32], length: int) -> NDArray[np.float32]:
    """Trim to ``length`` samples, or loop a shorter chunk to fill it."""
    if len(chunk) >= length:
        return chunk[:length]
    if len(chunk) == 0:
        return np.zeros(length, dtype=np.float32)
    return np.pad(chunk, (0, length - len(chunk)), mode="wrap")


def _to_mono_resampled(
    data: NDArray[np.float32], native_sr: int, sample_rate: int
) -> NDArray[np.float32]:
    mono = data.mean(axis=1, dtype=np.float32) if data.ndim == 2 else data
    if native_sr != sample_rate and len(mono):
        mono = soxr.resample(mono, native_sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _check_duration(n_samples: int, label: str, config: AnalysisConfig) -> None:
    if n_samples == 0:
        raise EmptyAudioError(label, "the input decodes to no audio samples")
    seconds = n_samples / config.sample_rate
    if seconds < config.min_duration:
        # Rounded down: 2.998 s is not "3.00 s long; at least 3 s needed".
        shown = np.floor(seconds * 100) / 100
        raise AudioTooShortError(
            label, f"the audio is {shown:.2f} s long; at least {config.min_duration:g} s needed"
        )


def _decode_with_ffmpeg(
    source: AudioSource, label: str, config: AnalysisConfig, sf_reason: str
) -> NDArray[np.float32]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioDecodeError(
            label, f"not a format libsndfile reads ({sf_reason}) and ffmpeg is not installed"
        )
    with contextlib.ExitStack() as stack:
        if isinstance(source, bytes | bytearray):
            # A file, not a pipe: MP4/M4A keep their index at the end, which ffmpeg can only
            # reach by seeking.
            tmp = stack.enter_context(tempfile.NamedTemporaryFile(suffix=".audio"))
            tmp.write(source)
            tmp.flush()
            path = tmp.name
        else:
            # "file:" keeps a name with a colon (or a leading "-") from reading as a protocol.
            path = "file:" + os.path.abspath(os.fspath(source))
        cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error",
               "-t", f"{config.max_duration:g}", "-i", path,
               "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(config.sample_rate),
               "-f", "f32le", "pipe:1"]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise AudioDecodeError(label, f"decoding took longer than {FFMPEG_TIMEOUT_S:g} s"
                                   ) from exc
    samples = np.frombuffer(proc.stdout[: len(proc.stdout) // 4 * 4], dtype="<f4").copy()
    detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    if not len(samples) and (proc.returncode != 0 or detail):
        if any("matches no streams" in line for line in detail):
            # A container ffmpeg reads (an image, a silent video) with no audio in it; its
            # last line is only a hint about the -map option.
            raise AudioDecodeError(label, "no audio stream in it (not an audio file)")
        reason = detail[-1] if detail else f"ffmpeg exit status {proc.returncode}"
        if path in reason:  # ffmpeg prefixes the path; keep the message short
            reason = reason.split(": ", 1)[-1]
        raise AudioDecodeError(
            label, f"not a decodable audio file: unknown format or corrupt data (ffmpeg: {reason})"
        )
    if not np.isfinite(samples).all():
        raise AudioDecodeError(label, "decoded samples are not finite")
    return samples
