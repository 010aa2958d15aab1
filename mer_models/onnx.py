"""onnxruntime sessions: the provider choice and one cached session per model file."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mer_models.errors import ModelError

if TYPE_CHECKING:
    import onnxruntime

logger = logging.getLogger(__name__)


def available_providers(prefer_gpu: bool = True) -> list[str]:
    """Execution providers to use: CUDA first when onnxruntime-gpu sees a GPU, else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if prefer_gpu and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


@functools.lru_cache(maxsize=8)
def cached_session(path: str, sha256: str, providers: tuple[str, ...], threads: int
                   ) -> onnxruntime.InferenceSession:
    """One session per (file, hash, providers, threads) in this process.

    Keyed by the artifact's hash as well as its path, so a retrained or reconverted file gets
    a new session. ``threads`` 0 leaves onnxruntime's default (all cores).

    The intra-op threads do not spin-wait after a run: by default they keep polling for
    work for a while, which on a 2-core machine took the other core from the feature
    extraction that runs between the model calls (1 thread: 240-310 ms per clip; 2 threads
    spinning: 370-400 ms; 2 threads without spinning: 260-300 ms, docs/BENCHMARKS.md).
    """
    import onnxruntime as ort

    logger.info("loading ONNX model %s with %s", Path(path).name, providers)
    return ort.InferenceSession(path, sess_options=session_options(threads),
                                providers=list(providers))


def session_options(threads: int) -> onnxruntime.SessionOptions:
    """The engine's session options: every graph optimisation, ``threads`` intra-op threads
    (0: onnxruntime's default, all cores) that do not spin-wait, one inter-op thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def load_session(artifact: Path, sha256: str, *, threads: int = 0, prefer_gpu: bool = True
                 ) -> onnxruntime.InferenceSession:
    """The cached session of a verified artifact on the preferred providers.

    Raises
    ------
    ModelError
        onnxruntime cannot load the file (its own untyped errors, named here).
    """
    providers = tuple(available_providers(prefer_gpu))
    try:
        return cached_session(str(artifact.resolve()), sha256, providers, threads)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{artifact}: onnxruntime cannot load the model: {exc}") from exc
