"""Worker processes that each hold loaded models: the one way to classify on several cores.

Each worker loads a :class:`~mer_models.engine.MoodEngine` once (one onnxruntime thread, one
BLAS thread: a process per core already fills the machine) and then classifies whatever it is
sent. Workers are started with ``spawn`` (onnxruntime's threads do not survive ``fork``) and
watch their parent: if it dies, even by ``kill -9``, they exit instead of lingering with
their models in memory.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from mer_models.config import AnalysisConfig

if TYPE_CHECKING:
    from mer_models.audio import AudioSource
    from mer_models.engine import MoodEngine
    from mer_models.result import MoodResult

#: How often a worker checks that its parent is alive, in seconds.
PARENT_POLL_S = 0.5


@dataclass(frozen=True)
class EngineSpec:
    """What a worker needs to load the same models as the parent's engine."""

    models_dir: Path
    config: AnalysisConfig
    prefer_gpu: bool = True

    @classmethod
    def of(cls, engine: MoodEngine) -> EngineSpec:
        """The spec of a loaded engine."""
        return cls(engine.models_dir, engine.config, engine.prefer_gpu)


class WorkerPool:
    """A pool of processes classifying audio with their own loaded models.

    Parameters
    ----------
    spec : EngineSpec
        The models and preprocessing every worker loads.
    workers : int
        Number of processes (at least 1).

    Notes
    -----
    Processes start on the first submission and each takes a few seconds to load its
    models; errors come back as values (:meth:`MoodEngine.try_classify`), so one bad input
    never breaks a batch.
    """

    def __init__(self, spec: EngineSpec, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a worker pool needs at least one worker, got {workers}")
        self.spec = spec
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(spec, os.getpid()))

    def submit(self, source: AudioSource) -> Future[MoodResult | Exception]:
        """Classify one input in a worker; the future holds the result or the error."""
        return self._executor.submit(_classify_in_worker, source)

    async def classify(self, source: AudioSource) -> MoodResult | Exception:
        """:meth:`submit`, awaited without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(source))

    def map(self, sources: Iterable[AudioSource], *, chunksize: int = 1
            ) -> list[MoodResult | Exception]:
        """Classify many inputs; one entry per input, in order."""
        return list(self._executor.map(_classify_in_worker, sources, chunksize=chunksize))

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the workers; queued inputs that have not started are dropped."""
        self._executor.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()


_worker_engine: MoodEngine | None = None


def _init_worker(spec: EngineSpec, parent_pid: int) -> None:
    global _worker_engine
    from threadpoolctl import threadpool_limits

    from mer_models.engine import MoodEngine

    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True,
                     name="parent-watch").start()
    # One process per core: BLAS/OpenMP threads inside each worker would only fight over the
    # same cores (measured: 9.0 clips/s with them, 21 without, docs/BENCHMARKS.md).
    threadpool_limits(limits=1)
    _worker_engine = MoodEngine(spec.models_dir, config=spec.config, threads=1,
                                prefer_gpu=spec.prefer_gpu)
    _worker_engine.warm_up()


def _exit_with_parent(parent_pid: int) -> None:
    # A parent killed with SIGKILL cannot stop its pool; the orphan is re-parented, so a
    # changed parent pid means ours is gone.
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(0)


def _classify_in_worker(source: AudioSource) -> MoodResult | Exception:
    if _worker_engine is None:
        raise RuntimeError("a WorkerPool task ran in a process without its initializer")
    return _worker_engine.try_classify(source)
