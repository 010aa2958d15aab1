"""MoodEngine: audio in, fused mood out.

The engine owns the preprocessing settings and a list of :class:`~mer_models.model.MoodModel`
(the ONNX CLDNN, the stacking ensemble and the head on the musicnn embedding), and runs a clip
through decode -> windows -> features and embedding -> every model -> late fusion
(:func:`mer_models.fusion.fuse`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mer_models.audio import AudioSource, load_window_pair, source_name
from mer_models.card import ModelCard, find_cards
from mer_models.config import AnalysisConfig
from mer_models.ensemble import DescriptorEnsemble
from mer_models.errors import MerError, ModelCardError, ModelNotFoundError
from mer_models.features import DESCRIPTOR_NAMES, clip_descriptors, extract_features
from mer_models.fusion import fuse
from mer_models.model import ModelInputs, MoodModel
from mer_models.moods import QUADRANTS
from mer_models.musicnn_head import MusicnnEmbedder, MusicnnHead
from mer_models.onnx_cldnn import OnnxCldnn
from mer_models.result import MoodResult

logger = logging.getLogger(__name__)

#: Where the shipped models live.
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent / "weights"
_CLASSES = [q.value for q in QUADRANTS]


def _load_cldnn(card: Path, engine: MoodEngine) -> MoodModel:
    return OnnxCldnn(card, preprocessing=engine.config.preprocessing(), threads=engine.threads,
                     prefer_gpu=engine.prefer_gpu)


def _load_ensemble(card: Path, engine: MoodEngine) -> MoodModel:
    return DescriptorEnsemble(card, feature_names=DESCRIPTOR_NAMES,
                              preprocessing=engine.config.preprocessing(),
                              threads=engine.threads)


def _load_musicnn(card: Path, engine: MoodEngine) -> MoodModel:
    return MusicnnHead(card, preprocessing=engine.config.preprocessing(),
                       threads=engine.threads, prefer_gpu=engine.prefer_gpu)


#: How each fused kind of model card is loaded, in fusion order.
LOADERS: dict[str, Callable[[Path, MoodEngine], MoodModel]] = {
    "cldnn": _load_cldnn,
    "ensemble": _load_ensemble,
    "musicnn": _load_musicnn,
}


class MoodEngine:
    """Classify the emotion of audio clips with the fused models of a folder.

    Parameters
    ----------
    models_dir : path, optional
        Folder holding model cards and artifacts (default: the shipped ``weights``); the
        newest card of each kind in :data:`LOADERS` is loaded.
    config : AnalysisConfig, optional
        Preprocessing and windowing; models refuse to load if it differs from their cards.
    threads : int
        onnxruntime intra-op threads (0: all cores).
    prefer_gpu : bool
        Use CUDA when onnxruntime-gpu and a GPU are present.

    Raises
    ------
    ModelNotFoundError
        The folder holds no model the engine can fuse.
    ModelCardError
        A model does not match its card or the engine's preprocessing.
    """

    def __init__(
        self,
        models_dir: str | Path | None = None,
        *,
        config: AnalysisConfig | None = None,
        threads: int = 0,
        prefer_gpu: bool = True,
    ) -> None:
        self.models_dir = Path(models_dir) if models_dir is not None else DEFAULT_MODELS_DIR
        self.config = config or AnalysisConfig()
        self.threads = threads
        self.prefer_gpu = prefer_gpu
        cards = find_cards(self.models_dir) if self.models_dir.is_dir() else {}
        self.models: list[MoodModel] = [load(cards[kind], self)
                                        for kind, load in LOADERS.items() if kind in cards]
        if not self.models:
            raise ModelNotFoundError(
                f"{self.models_dir}: no trained models found; train them with "
                "`python -m train all` or point MER_MODELS_DIR at a folder of model cards"
            )
        for model in self.models:
            if model.card.classes != _CLASSES:
                raise ModelCardError(f"{model.card.display_name}: classes "
                                     f"{model.card.classes} are not {_CLASSES}")
        #: Computes the clip embedding when a model needs it (and the result carries it).
        self.embedder: MusicnnEmbedder | None = next(
            (m.embedder for m in self.models if isinstance(m, MusicnnHead)), None)
        # The embedding may be cut from more windows than the other models see (5 against 3):
        # both sets come from one decode when they nest (load_window_pair).
        self._embed_config = (self.embedder.analysis(self.config)
                              if self.embedder is not None else self.config)

    @property
    def cards(self) -> list[ModelCard]:
        """Cards of the loaded models."""
        return [m.card for m in self.models]

    @property
    def versions(self) -> dict[str, str]:
        """``{kind: name-version}`` of every loaded model: ``cldnn``, ``ensemble``, ``musicnn``."""
        return {m.card.kind: m.card.display_name for m in self.models}

    @property
    def weights(self) -> dict[str, float]:
        """``{kind: fusion weight}`` of every loaded model (from its card)."""
        return {m.card.kind: m.card.fusion_weight for m in self.models}

    def model(self, kind: str) -> MoodModel | None:
        """The loaded model of a kind (``"cldnn"``, ``"ensemble"``, ``"musicnn"``), if any."""
        return next((m for m in self.models if m.card.kind == kind), None)

    def warm_up(self) -> None:
        """Run one synthetic clip through every stage (lazy imports, JIT, session init)."""
        rng = np.random.default_rng(0)
        noise = (0.1 * rng.standard_normal((1, self.config.window_samples))).astype(np.float32)
        self._predict(noise)

    def classify(self, source: AudioSource, *, name: str | None = None) -> MoodResult:
        """Classify one clip.

        Parameters
        ----------
        source : str, path-like or bytes
            An audio file or its bytes.
        name : str, optional
            Name reported in the result and in errors (default: the path).

        Returns
        -------
        MoodResult

        Raises
        ------
        AudioError
            The input cannot be decoded or analysed (the message names it and says why).
        """
        start = time.perf_counter()
        audio, embed_windows = load_window_pair(source, self.config, self._embed_config,
                                                name=name)
        decoded = time.perf_counter()
        probabilities, descriptors, embedding, timings = self._predict(audio.windows,
                                                                       embed_windows)
        timings = {"decode": (decoded - start) * 1e3, **timings,
                   "total": (time.perf_counter() - start) * 1e3}
        return MoodResult.from_arrays(
            input=audio.source, window_probabilities=probabilities, starts=audio.starts,
            window_seconds=self.config.window_seconds, models=self.versions,
            weights=self.weights, timings_ms={k: round(v, 2) for k, v in timings.items()},
            duration=audio.duration,
            descriptors=dict(zip(DESCRIPTOR_NAMES, descriptors.tolist(), strict=True)),
            embedding=None if embedding is None else embedding.tolist(),
        )

    def try_classify(self, source: AudioSource) -> MoodResult | Exception:
        """:meth:`classify`, returning the error instead of raising it.

        An :class:`MerError` comes back as it is; anything else (a bug) is logged with its
        traceback and comes back as a :class:`MerError` naming the input, so one broken input
        never sinks a batch.
        """
        try:
            return self.classify(source)
        except MerError as exc:
            return exc
        except Exception as exc:
            logger.exception("unexpected error on %s", source_name(source))
            return MerError(f"{source_name(source)}: internal error "
                            f"({type(exc).__name__}: {exc})")

    def classify_many(
        self, sources: Sequence[AudioSource], *, workers: int | None = None
    ) -> list[MoodResult | Exception]:
        """Classify many clips on all cores.

        Parameters
        ----------
        sources : sequence
            Paths or bytes.
        workers : int, optional
            Worker processes (default: one per core); 1 runs in this process.

        Returns
        -------
        list
            One entry per source, in order: a :class:`MoodResult`, or the exception that
            input raised (the others still run).
        """
        from mer_models.pool import EngineSpec, WorkerPool

        workers = min(workers or os.cpu_count() or 1, len(sources))
        if workers <= 1:
            return [self.try_classify(s) for s in sources]
        with WorkerPool(EngineSpec.of(self), workers) as pool:
            return pool.map(sources, chunksize=max(1, len(sources) // (4 * workers)))

    def _predict(self, windows: NDArray[np.float32],
                 embed_windows: NDArray[np.float32] | None = None
                 ) -> tuple[NDArray[np.float64], NDArray[np.float32], NDArray[np.float32] | None,
                            dict[str, float]]:
        """Fused per-window probabilities, the clip descriptors and embedding, stage timings.

        ``embed_windows`` are the windows the embedding is cut from (default ``windows``).
        """
        t0 = time.perf_counter()
        features = extract_features(windows, self.config)
        descriptors = clip_descriptors(features.descriptors)
        timings = {"features": (time.perf_counter() - t0) * 1e3}
        embedding = None
        if self.embedder is not None:
            t = time.perf_counter()
            embedding = self.embedder.embed(windows if embed_windows is None else embed_windows,
                                            self.config.sample_rate)
            timings["embedding"] = (time.perf_counter() - t) * 1e3
        inputs = ModelInputs(logmel=features.logmel, descriptors=descriptors,
                             embedding=embedding)
        parts: list[NDArray[np.float64]] = []
        for model in self.models:
            t = time.perf_counter()
            parts.append(model.quadrant_probabilities(inputs))
            timings[model.card.kind] = (time.perf_counter() - t) * 1e3
        fused = fuse(parts, [m.card.fusion_weight for m in self.models])
        return (np.broadcast_to(fused, (len(windows), len(_CLASSES))), descriptors, embedding,
                timings)
