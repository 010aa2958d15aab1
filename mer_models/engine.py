"""MoodEngine: audio in, fused mood out.

The engine owns the preprocessing settings and the two models, and runs a clip through
decode -> windows -> features -> CLDNN (ONNX) + stacking ensemble -> late fusion.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mer_models.audio import AudioSource, load_windows, source_name
from mer_models.card import ModelCard, find_cards
from mer_models.config import AnalysisConfig
from mer_models.ensemble import DescriptorEnsemble
from mer_models.errors import MerError, ModelCardError, ModelNotFoundError
from mer_models.features import DESCRIPTOR_NAMES, clip_descriptors, extract_features
from mer_models.moods import QUADRANTS
from mer_models.onnx_cldnn import OnnxCldnn
from mer_models.result import MoodResult

logger = logging.getLogger(__name__)

#: Where the shipped models live.
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent / "weights"
_CLASSES = [q.value for q in QUADRANTS]


class MoodEngine:
    """Classify the emotion of audio clips with the fused CLDNN and stacking ensemble.

    Parameters
    ----------
    models_dir : path, optional
        Folder holding model cards and artifacts (default: the shipped ``weights``).
    config : AnalysisConfig, optional
        Preprocessing and windowing; models refuse to load if it differs from their cards.
    threads : int
        onnxruntime intra-op threads (0: all cores).
    prefer_gpu : bool
        Use CUDA when onnxruntime-gpu and a GPU are present.

    Raises
    ------
    ModelNotFoundError
        The folder holds neither a CLDNN nor an ensemble.
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
        if "cldnn" not in cards and "ensemble" not in cards:
            raise ModelNotFoundError(
                f"{self.models_dir}: no trained models found; train them with "
                "`python -m train all` or point MER_MODELS_DIR at a folder of model cards"
            )
        preprocessing = self.config.preprocessing()
        self.cldnn = (OnnxCldnn(cards["cldnn"], preprocessing=preprocessing, threads=threads,
                                prefer_gpu=prefer_gpu) if "cldnn" in cards else None)
        self.ensemble = (DescriptorEnsemble(cards["ensemble"], feature_names=DESCRIPTOR_NAMES,
                                            preprocessing=preprocessing)
                         if "ensemble" in cards else None)
        for model in (self.cldnn, self.ensemble):
            if model is not None and model.card.classes != _CLASSES:
                raise ModelCardError(
                    f"{model.card_path}: classes {model.card.classes} are not {_CLASSES}"
                )

    @property
    def cards(self) -> list[ModelCard]:
        """Cards of the loaded models."""
        return [m.card for m in (self.cldnn, self.ensemble) if m is not None]

    @property
    def versions(self) -> dict[str, str | None]:
        """``{"cldnn": name-version or None, "ensemble": name-version or None}``."""
        return {
            "cldnn": self.cldnn.card.display_name if self.cldnn else None,
            "ensemble": self.ensemble.card.display_name if self.ensemble else None,
        }

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
        audio = load_windows(source, self.config, name=name)
        decoded = time.perf_counter()
        probabilities, descriptors, timings = self._predict(audio.windows)
        timings = {"decode": (decoded - start) * 1e3, **timings,
                   "total": (time.perf_counter() - start) * 1e3}
        return MoodResult.from_arrays(
            input=audio.source, window_probabilities=probabilities, starts=audio.starts,
            window_seconds=self.config.window_seconds, models=self.versions,
            timings_ms={k: round(v, 2) for k, v in timings.items()}, duration=audio.duration,
            descriptors=dict(zip(DESCRIPTOR_NAMES, descriptors.tolist(), strict=True)),
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
        workers = workers or os.cpu_count() or 1
        if workers <= 1 or len(sources) <= 1:
            return [self.try_classify(s) for s in sources]
        context = multiprocessing.get_context("spawn")  # onnxruntime's threads do not fork
        with ProcessPoolExecutor(
            max_workers=min(workers, len(sources)), mp_context=context,
            initializer=init_worker, initargs=(self.models_dir, self.config, self.prefer_gpu),
        ) as pool:
            chunksize = max(1, len(sources) // (4 * workers))
            return list(pool.map(classify_in_worker, sources, chunksize=chunksize))

    def _predict(self, windows: NDArray[np.float32]
                 ) -> tuple[NDArray[np.float64], NDArray[np.float32], dict[str, float]]:
        """Fused per-window probabilities, the clip descriptors, and stage timings (ms)."""
        t0 = time.perf_counter()
        features = extract_features(windows, self.config)
        t1 = time.perf_counter()
        descriptors = clip_descriptors(features.descriptors)
        parts: list[tuple[float, NDArray[np.float64]]] = []
        if self.cldnn is not None:
            parts.append((self.cldnn.card.fusion_weight,
                          self.cldnn.predict(features.logmel).astype(np.float64)))
        t2 = time.perf_counter()
        if self.ensemble is not None:
            clip = self.ensemble.predict(descriptors)[0]
            parts.append((self.ensemble.card.fusion_weight,
                          np.broadcast_to(clip.astype(np.float64), (len(windows), 4))))
        t3 = time.perf_counter()
        weights = np.array([w for w, _ in parts])
        if weights.sum() <= 0:  # every card says weight 0: fall back to a plain mean
            weights = np.ones_like(weights)
        fused = np.einsum("m,mwc->wc", weights, np.stack([p for _, p in parts])) / weights.sum()
        timings = {"features": (t1 - t0) * 1e3, "cldnn": (t2 - t1) * 1e3,
                   "ensemble": (t3 - t2) * 1e3}
        return fused, descriptors, timings


_worker_engine: MoodEngine | None = None


def init_worker(models_dir: Path, config: AnalysisConfig, prefer_gpu: bool = True) -> None:
    """Initializer of a worker process: load the models once (one onnxruntime thread)."""
    global _worker_engine
    from threadpoolctl import threadpool_limits

    # One process per core: BLAS/OpenMP threads inside each worker would only fight over the
    # same cores (measured: 9.0 clips/s with them, 21 without, docs/BENCHMARKS.md).
    threadpool_limits(limits=1)
    _worker_engine = MoodEngine(models_dir, config=config, threads=1, prefer_gpu=prefer_gpu)
    _worker_engine.warm_up()


def classify_in_worker(source: AudioSource) -> MoodResult | Exception:
    """Classify in a process set up by :func:`init_worker`; errors are returned, not raised."""
    if _worker_engine is None:
        raise RuntimeError("classify_in_worker called in a process without init_worker")
    return _worker_engine.try_classify(source)
