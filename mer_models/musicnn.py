"""The pretrained musicnn embedding: its log-mel front end and the ONNX runner.

musicnn (Pons & Serra 2019, ISC licence) is a pair of tagging networks trained on the Million
Song Dataset (MSD) and MagnaTagATune (MTT); ``python -m train.musicnn_convert`` turns the
checkpoints of its PyPI wheel into ``musicnn-msd-1.onnx`` and ``musicnn-mtt-1.onnx``. Both take
3-second log-mel patches and give a 200-value penultimate layer and 50 tag probabilities.

:func:`musicnn_patches` is the one front end, for training and serving: it turns the engine's
analysis windows into patches. :class:`OnnxMusicnn` runs one network on all patches of a clip
and pools them into a clip embedding (mean and standard deviation per unit, 400 values).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

from mer_models import dsp
from mer_models.card import ModelCard
from mer_models.errors import ModelCardError, ParameterError

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
#: Frames of one patch: 3 s at 16 kHz with a hop of 256, as the networks were trained.
PATCH_FRAMES = 187
#: Units of the penultimate layer; a clip embedding holds twice as many (mean, std).
PENULTIMATE_SIZE = 200
N_TAGS = 50
#: Patches cut from each analysis window: one 5-second window holds one 3-second patch
#: without overlap (311 frames), so the default takes the centred one.
DEFAULT_PATCHES_PER_WINDOW = 1
#: Card kinds of the two networks.
MUSICNN_KINDS = ("musicnn-msd", "musicnn-mtt")

#: The front end's settings, recorded in each card's ``preprocessing`` and checked on load.
FRONT_END: dict[str, Any] = {
    "sample_rate": SAMPLE_RATE,
    "resampler": "soxr-hq",
    "n_fft": N_FFT,
    "hop_length": HOP_LENGTH,
    "window": "hann",
    "center": False,
    "power": 2.0,
    "n_mels": N_MELS,
    "fmin": 0.0,
    "fmax": SAMPLE_RATE / 2,
    "mel_scale": "slaney",
    "mel_norm": "slaney",
    "log": "log10(1 + 10000 * mel), float32",
    "patch_frames": PATCH_FRAMES,
    "layout": "patch, frame, mel",
}


@dataclass(frozen=True)
class MusicnnPatches:
    """The network input of one clip.

    Attributes
    ----------
    patches : ndarray, shape (n_patches, 187, 96), float32
        Log-mel patches, time first then mel band (the layout the ONNX models take).
    window_index : ndarray, shape (n_patches,), int64
        The analysis window each patch was cut from.
    start_frames : ndarray, shape (n_patches,), int64
        First frame of each patch within its window (hop 256 at 16 kHz: 16 ms per frame).
    """

    patches: NDArray[np.float32]
    window_index: NDArray[np.int64]
    start_frames: NDArray[np.int64]


def musicnn_patches(
    windows: NDArray[np.floating],
    *,
    sample_rate: int = 22_050,
    patches_per_window: int = DEFAULT_PATCHES_PER_WINDOW,
) -> MusicnnPatches:
    """Cut musicnn's log-mel patches from analysis windows.

    Each window is resampled to 16 kHz (soxr, high quality), turned into a 96-band mel power
    spectrogram (n_fft 512, hop 256, periodic Hann window, no centre padding, Slaney mel scale
    and area normalisation, 0-8 kHz) and compressed with ``log10(1 + 10000 * mel)`` in float32.
    ``patches_per_window`` patches of 187 frames are spread evenly over the window, the first
    starting at its first frame and the last ending at its last; a single patch is centred.
    Patches overlap when they do not fit side by side (2 or more per 5-second window).

    Parameters
    ----------
    windows : ndarray, shape (n_windows, n_samples)
        Mono audio at ``sample_rate``, e.g. :attr:`mer_models.audio.WindowedAudio.windows`.
        Each window must last at least 3.01 s (48,128 samples at 16 kHz).
    sample_rate : int
        Rate of ``windows`` in Hz (the engine's analysis rate,
        :attr:`mer_models.config.AnalysisConfig.sample_rate`).
    patches_per_window : int
        Patches cut from each window.

    Returns
    -------
    MusicnnPatches
        ``n_windows * patches_per_window`` patches, window by window.

    Raises
    ------
    ParameterError
        ``windows`` is not a non-empty 2-D array of finite samples, a window is too short, or
        ``sample_rate`` or ``patches_per_window`` is not a positive integer.
    """
    _check_positive("sample_rate", sample_rate)
    _check_positive("patches_per_window", patches_per_window)
    audio = np.asarray(windows)
    if audio.ndim != 2 or audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ParameterError(f"windows must have shape (n_windows, n_samples), got {audio.shape}")
    if not np.isfinite(audio).all():
        raise ParameterError("windows hold NaN or infinite samples")
    logmel = log_mel(_resample(audio.astype(np.float32), sample_rate))
    n_windows, n_frames, _ = logmel.shape
    if n_frames < PATCH_FRAMES:
        seconds = audio.shape[1] / sample_rate
        raise ParameterError(f"windows of {seconds:.2f} s give {n_frames} frames; a musicnn "
                             f"patch needs {PATCH_FRAMES} (at least 3.01 s)")
    starts = patch_starts(n_frames, patches_per_window)
    patches = np.stack([logmel[w, s : s + PATCH_FRAMES] for w in range(n_windows)
                        for s in starts])
    window_index = np.repeat(np.arange(n_windows, dtype=np.int64), len(starts))
    return MusicnnPatches(np.ascontiguousarray(patches, dtype=np.float32), window_index,
                          np.tile(starts, n_windows))


def log_mel(audio: NDArray[np.float32]) -> NDArray[np.float32]:
    """musicnn's log-compressed mel spectrogram of 16 kHz audio.

    Parameters
    ----------
    audio : ndarray, shape (..., n_samples), float32
        Mono audio at 16 kHz, at least 512 samples.

    Returns
    -------
    ndarray, shape (..., n_frames, 96), float32
        ``log10(1 + 10000 * mel)``, frames first; ``n_frames = 1 + (n_samples - 512) // 256``.
    """
    # librosa.feature.melspectrogram(y=audio, sr=16000, n_fft=512, hop_length=256,
    # center=False, n_mels=96), in numpy (mer_models.dsp).
    power = np.abs(dsp.stft(np.asarray(audio, dtype=np.float32), N_FFT, HOP_LENGTH,
                            center=False)) ** 2.0
    mel = np.einsum("...ft,mf->...mt", power, dsp.mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS),
                    optimize=True)
    # In float32: musicnn's own extractor casts to float16 first, and 10000 * mel overflows
    # to +inf in every bin louder than 4.8 on this scale.
    logmel = np.log10(np.float32(1.0) + np.float32(10_000.0) * mel.astype(np.float32))
    return np.ascontiguousarray(np.swapaxes(logmel, -1, -2), dtype=np.float32)


def patch_starts(n_frames: int, patches_per_window: int) -> NDArray[np.int64]:
    """First frames of ``patches_per_window`` patches spread over ``n_frames`` frames.

    One patch is centred; several run from the first frame to the last, evenly spaced.
    """
    span = n_frames - PATCH_FRAMES
    if span < 0:
        raise ParameterError(f"{n_frames} frames cannot hold a {PATCH_FRAMES}-frame patch")
    if patches_per_window == 1:
        return np.array([span // 2], dtype=np.int64)
    return np.round(np.linspace(0, span, patches_per_window)).astype(np.int64)


def pool_embedding(penultimate: NDArray[np.floating]) -> NDArray[np.float32]:
    """Clip embedding: per-unit mean, then standard deviation, over a clip's patches.

    Parameters
    ----------
    penultimate : ndarray, shape (n_patches, 200)
        Penultimate-layer values of every patch of one clip.

    Returns
    -------
    ndarray, shape (400,), float32
        Means of the 200 units followed by their population standard deviations (zero for a
        single patch).
    """
    values = np.asarray(penultimate, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        raise ParameterError(f"need shape (n_patches, units), got {values.shape}")
    return np.concatenate([values.mean(axis=0), values.std(axis=0)]).astype(np.float32)


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value <= 0:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")


def _resample(audio: NDArray[np.float32], sample_rate: int) -> NDArray[np.float32]:
    if sample_rate == SAMPLE_RATE:
        return audio
    import soxr

    # soxr takes (frames, channels): the windows become channels of one multichannel signal.
    out = soxr.resample(np.ascontiguousarray(audio.T), sample_rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).T.reshape(len(audio), -1))


#: Patches per onnxruntime call on the CPU. A session's memory grows with its largest batch
#: (onnxruntime plans one block for every intermediate tensor and keeps it): the shipped
#: layout's 10 patches held 816 MB in the two networks' sessions, 2 patches hold 223 MB, and
#: on this CPU smaller batches are not slower (p50 854 ms per clip for both networks in
#: calls of 2 patches, 949 ms in one call of 10; identical outputs; docs/BENCHMARKS.md).
CPU_BATCH: Final = 2


class OnnxMusicnn:
    """One musicnn network (MSD or MTT) run through a cached onnxruntime session.

    Parameters
    ----------
    card_path : path
        The model card (JSON) of kind ``musicnn-msd`` or ``musicnn-mtt``; the ``.onnx``
        artifact lies beside it and must match the card's sha256.
    threads : int
        Intra-op threads of the session (0: onnxruntime's default, all cores).
    prefer_gpu : bool
        Use the CUDA provider when available.

    Raises
    ------
    ModelNotFoundError
        The card or the artifact is missing.
    ModelCardError
        Wrong kind, hash, front-end settings or input/output schema.
    ModelError
        onnxruntime cannot load the artifact.
    """

    def __init__(self, card_path: str | Path, *, threads: int = 0,
                 prefer_gpu: bool = True) -> None:
        from mer_models.onnx import load_session

        self.card_path = Path(card_path)
        self.card = ModelCard.load(self.card_path)
        if self.card.kind not in MUSICNN_KINDS:
            raise ModelCardError(f"{card_path}: kind {self.card.kind!r} is not a musicnn network")
        artifact = self.card.verify(self.card_path)
        if self.card.preprocessing != FRONT_END:
            differences = {key: (self.card.preprocessing.get(key), FRONT_END.get(key))
                           for key in {*self.card.preprocessing, *FRONT_END}
                           if self.card.preprocessing.get(key) != FRONT_END.get(key)}
            raise ModelCardError(f"{card_path}: front end differs from mer_models.musicnn "
                                 f"(card, module): {differences}")
        self._session = load_session(artifact, self.card.sha256, threads=threads,
                                     prefer_gpu=prefer_gpu)
        self._check_schema()
        self._input = self.card.inputs[0].name
        self._penultimate, self._taggram = (spec.name for spec in self.card.outputs)
        # A GPU wants the whole batch; on the CPU, see CPU_BATCH.
        self._batch_all = self.providers[0] != "CPUExecutionProvider"

    @property
    def providers(self) -> list[str]:
        """Providers the session actually runs on."""
        return list(self._session.get_providers())

    @property
    def tags(self) -> list[str]:
        """The 50 tags of :meth:`taggram`, in order."""
        return list(self.card.classes)

    def _check_schema(self) -> None:
        expected = [(s.name, s.shape) for s in (*self.card.inputs, *self.card.outputs)]
        wanted = [("", [None, PATCH_FRAMES, N_MELS]), ("", [None, PENULTIMATE_SIZE]),
                  ("", [None, N_TAGS])]
        if [shape for _, shape in expected] != [shape for _, shape in wanted]:
            raise ModelCardError(f"{self.card_path}: card schema {expected} is not musicnn's "
                                 "(patches (n, 187, 96) -> penultimate (n, 200), taggram (n, 50))")
        actual = [(t.name, [d if isinstance(d, int) else None for d in t.shape])
                  for t in (*self._session.get_inputs(), *self._session.get_outputs())]
        if actual != expected:
            raise ModelCardError(f"{self.card_path}: the model's tensors {actual} differ from "
                                 f"the card's {expected}")

    def _run(self, patches: NDArray[np.floating], output: str) -> NDArray[np.float32]:
        batch = np.ascontiguousarray(patches, dtype=np.float32)
        if batch.ndim != 3 or batch.shape[1:] != (PATCH_FRAMES, N_MELS) or not len(batch):
            raise ParameterError(f"patches must have shape (n, {PATCH_FRAMES}, {N_MELS}), "
                                 f"got {batch.shape}")
        step = len(batch) if self._batch_all else CPU_BATCH
        values = [self._session.run([output], {self._input: batch[i : i + step]})[0]
                  for i in range(0, len(batch), step)]
        return np.asarray(np.concatenate(values), dtype=np.float32)

    def penultimate(self, patches: NDArray[np.floating]) -> NDArray[np.float32]:
        """Penultimate-layer values of each patch (on the CPU, :data:`CPU_BATCH` at a time).

        Parameters
        ----------
        patches : ndarray, shape (n_patches, 187, 96)
            :attr:`MusicnnPatches.patches`.

        Returns
        -------
        ndarray, shape (n_patches, 200), float32
        """
        return self._run(patches, self._penultimate)

    def taggram(self, patches: NDArray[np.floating]) -> NDArray[np.float32]:
        """Tag probabilities of each patch, shape (n_patches, 50), tags as in :attr:`tags`."""
        return self._run(patches, self._taggram)

    def embed(self, patches: NDArray[np.floating]) -> NDArray[np.float32]:
        """The clip embedding: :func:`pool_embedding` of all the clip's patches.

        Parameters
        ----------
        patches : ndarray, shape (n_patches, 187, 96)
            Every patch of one clip.

        Returns
        -------
        ndarray, shape (400,), float32
            Mean then standard deviation over patches of the 200 penultimate units.
        """
        return pool_embedding(self.penultimate(patches))
