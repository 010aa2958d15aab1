"""The third fused model: a mood head on the pretrained musicnn embedding.

:class:`MusicnnEmbedder` turns a clip's analysis windows into one embedding: musicnn patches
(:func:`mer_models.musicnn.musicnn_patches`), every patch of the clip through each network
(on the CPU in calls of :data:`~mer_models.musicnn.CPU_BATCH` patches), mean and standard
deviation of the penultimate layer per network
(400 values each), concatenated in the card's order. :class:`MusicnnHead` is the
:class:`~mer_models.model.MoodModel`: a scikit-learn classifier on that embedding, clip-level
like the descriptor ensemble, served from its ONNX conversion when the card lists one, else
from the ``.skops`` file (trusted types only; :func:`mer_models.ensemble.load_classifier`).

The head's card names the networks and the patch layout it was trained on::

    "architecture": {"embedding": {"networks": ["musicnn-msd-1", "musicnn-mtt-1"],
                                   "patches_per_window": 2, "windows": 5}}

``windows`` (optional; default: the engine's windows) is how many analysis windows the
patches are cut from: the engine decodes them once and gives the other models the windows
among them that are its own (3 of 5). The networks' own cards (``musicnn-msd-1.json``)
must lie in the same folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mer_models.card import ModelCard
from mer_models.config import AnalysisConfig
from mer_models.ensemble import backend, load_classifier
from mer_models.errors import ModelCardError
from mer_models.model import ModelInputs, required
from mer_models.musicnn import PENULTIMATE_SIZE, OnnxMusicnn, musicnn_patches, pool_embedding


class MusicnnEmbedder:
    """One clip embedding from one or more musicnn networks.

    Parameters
    ----------
    networks : sequence of OnnxMusicnn
        The networks, in the order their embeddings are concatenated.
    patches_per_window : int
        Patches cut from each analysis window (:func:`mer_models.musicnn.musicnn_patches`).
    windows : int, optional
        Analysis windows per clip the patches are cut from (None: the engine's).
    """

    def __init__(self, networks: Sequence[OnnxMusicnn], patches_per_window: int,
                 windows: int | None = None) -> None:
        if not networks:
            raise ModelCardError("a musicnn embedding needs at least one network")
        self.networks = list(networks)
        self.patches_per_window = patches_per_window
        self.windows = windows

    @classmethod
    def from_layout(cls, networks: Sequence[OnnxMusicnn], layout: dict[str, Any]
                    ) -> MusicnnEmbedder:
        """The embedder of a card's ``architecture.embedding`` layout (or a training layout):
        ``patches_per_window``, and ``windows`` when it names them."""
        return cls(networks, layout["patches_per_window"], layout.get("windows"))

    def analysis(self, config: AnalysisConfig) -> AnalysisConfig:
        """The analysis settings to decode this embedding's windows with: ``config`` with
        :attr:`windows` windows per clip (``config`` itself when that is None)."""
        return config if self.windows is None else config.with_windows(self.windows)

    @property
    def names(self) -> list[str]:
        """``name-version`` of each network, in concatenation order."""
        return [n.card.display_name for n in self.networks]

    @property
    def size(self) -> int:
        """Values in one embedding: mean and std of 200 units per network."""
        return 2 * PENULTIMATE_SIZE * len(self.networks)

    def embed(self, windows: NDArray[np.floating], sample_rate: int) -> NDArray[np.float32]:
        """The clip embedding of a clip's analysis windows.

        Parameters
        ----------
        windows : ndarray, shape (n_windows, n_samples)
            Mono audio at ``sample_rate`` (:attr:`mer_models.audio.WindowedAudio.windows`).
        sample_rate : int
            Rate of ``windows`` in Hz.

        Returns
        -------
        ndarray, shape (:attr:`size`,), float32
            Per network, the mean then the standard deviation over the clip's patches of the
            200 penultimate units.
        """
        patches = musicnn_patches(windows, sample_rate=sample_rate,
                                  patches_per_window=self.patches_per_window).patches
        return np.concatenate([pool_embedding(n.penultimate(patches)) for n in self.networks])


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class MusicnnHead:
    """Quadrant probabilities from the musicnn embedding (the fused model of kind ``musicnn``).

    Parameters
    ----------
    card_path : path
        The head's model card; its artifacts (``.skops``, and ``.onnx`` once converted) and the
        cards of the networks it names lie beside it.
    preprocessing : dict, optional
        The engine's preprocessing; loading refuses a card that differs.
    threads : int
        onnxruntime intra-op threads of the networks and the head (0: all cores).
    prefer_gpu : bool
        Run the networks on CUDA when available.

    Raises
    ------
    ModelNotFoundError
        The card, the head or a network is missing.
    ModelCardError
        Wrong kind, hash, preprocessing, embedding layout or classes.
    """

    def __init__(self, card_path: str | Path, *, preprocessing: dict[str, Any] | None = None,
                 threads: int = 0, prefer_gpu: bool = True) -> None:
        self.card_path = Path(card_path)
        self.card = ModelCard.load(self.card_path)
        if self.card.kind != "musicnn":
            raise ModelCardError(f"{card_path}: kind {self.card.kind!r} is not a musicnn head")
        self.card.verify(self.card_path, preprocessing=preprocessing)
        layout = self.card.architecture.get("embedding")
        if (not isinstance(layout, dict) or not layout.get("networks")
                or not _positive_int(layout.get("patches_per_window"))
                or not _positive_int(layout.get("windows", 1))):
            raise ModelCardError(f"{card_path}: architecture.embedding must name the networks "
                                 "and patches_per_window (and windows, if given), as positive "
                                 "integers")
        networks = [OnnxMusicnn(self.card_path.parent / f"{name}.json", threads=threads,
                                prefer_gpu=prefer_gpu) for name in layout["networks"]]
        self.embedder = MusicnnEmbedder.from_layout(networks, layout)
        self._model = load_classifier(self.card_path, self.card, threads=threads)
        expected = getattr(self._model, "n_features_in_", None)
        if expected != self.embedder.size:
            raise ModelCardError(f"{card_path}: the head takes {expected} values but "
                                 f"{'+'.join(self.embedder.names)} give {self.embedder.size}")

    @property
    def backend(self) -> str:
        """``"onnxruntime"`` or ``"skops"``: which artifact of the head is serving."""
        return backend(self._model)

    def predict(self, embedding: NDArray[np.floating]) -> NDArray[np.float32]:
        """Class probabilities of embeddings, shape (n, 4), from shape (size,) or (n, size)."""
        x = np.atleast_2d(np.asarray(embedding, dtype=np.float64))
        return np.asarray(self._model.predict_proba(x), dtype=np.float32)

    def quadrant_probabilities(self, inputs: ModelInputs) -> NDArray[np.float64]:
        """Clip probabilities, shape (1, 4), from the clip's embedding."""
        embedding = required(inputs.embedding, "the musicnn embedding", self.card)
        return self.predict(embedding).astype(np.float64)
