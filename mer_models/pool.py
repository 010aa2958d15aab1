"""Worker processes that each hold loaded models: the one way to classify on several cores.

Each worker loads a :class:`~mer_models.engine.MoodEngine` once (one onnxruntime thread, one
BLAS thread: a process per core already fills the machine) and then classifies whatever it is
sent. Workers are started with ``spawn`` (onnxruntime's threads do not survive ``fork``) and
watch their parent: if it dies, even by ``kill -9``, they exit instead of lingering with
their models in memory. If a worker dies (killed, out of memory), the pool starts fresh
workers and the inputs it was holding are sent once more; an input whose second try dies too
comes back as a :class:`WorkerDiedError`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, InvalidStateError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from mer_models.config import AnalysisConfig
from mer_models.errors import MerError

if TYPE_CHECKING:
    from mer_models.audio import AudioSource
    from mer_models.engine import MoodEngine
    from mer_models.result import MoodResult

logger = logging.getLogger(__name__)

#: How often a worker checks that its parent is alive, in seconds.
PARENT_POLL_S = 0.5
#: Tries of one input when workers die under it (each on freshly started workers).
MAX_TRIES = 2


class WorkerDiedError(MerError):
    """A worker process died (killed, out of memory, crashed) under an input, on every try.

    Parameters
    ----------
    source : str
        Name of the input.
    reason : str
        What happened.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple[type[WorkerDiedError], tuple[str, str]]:
        return (type(self), (self.source, self.reason))


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

    Attributes
    ----------
    restarts : int
        Times the workers were started again after one died.

    Notes
    -----
    Processes start on the first submission and each takes a few seconds to load its
    models; errors come back as values (:meth:`MoodEngine.try_classify`), so one bad input
    never breaks a batch. A worker that dies breaks the whole process pool (the standard
    library's rule): fresh workers are started and every input it held is tried again, at
    most :data:`MAX_TRIES` times in all, then answered with a :class:`WorkerDiedError`.
    """

    def __init__(self, spec: EngineSpec, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a worker pool needs at least one worker, got {workers}")
        self.spec = spec
        self.workers = workers
        self.restarts = 0
        self._lock = threading.Lock()
        self._closed = False
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(self.spec, os.getpid()))

    def _restart(self, broken: ProcessPoolExecutor) -> None:
        """Replace ``broken`` by fresh workers, unless another caller already did."""
        with self._lock:
            if self._executor is not broken or self._closed:
                return
            self._executor = self._start()
            self.restarts += 1
        # Nothing to stop: a broken executor has terminated its processes and its manager
        # thread ends by itself (and this may run in that very thread).
        logger.warning("a classification worker died: worker pool started again (%d restarts)",
                       self.restarts)

    def submit(self, source: AudioSource) -> Future[MoodResult | Exception]:
        """Classify one input in a worker; the future holds the result or the error.

        Raises
        ------
        RuntimeError
            The pool was shut down.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
        outer: Future[MoodResult | Exception] = Future()
        self._try(source, outer, 1)
        return outer

    def _try(self, source: AudioSource, outer: Future[MoodResult | Exception],
             attempt: int) -> None:
        with self._lock:
            executor, closed = self._executor, self._closed
        if closed:
            _settle(outer, exception=RuntimeError("the worker pool is shut down"))
            return
        try:
            inner = executor.submit(_classify_in_worker, source)
        except BrokenProcessPool:  # it broke before this input reached it
            self._retry_or_give_up(source, outer, attempt, executor)
            return
        except RuntimeError as exc:  # shut down meanwhile
            _settle(outer, exception=exc)
            return

        def done(inner: Future[MoodResult | Exception]) -> None:
            if inner.cancelled():
                outer.cancel()
            elif isinstance(inner.exception(), BrokenProcessPool):
                self._retry_or_give_up(source, outer, attempt, executor)
            elif (exc := inner.exception()) is not None:
                _settle(outer, exception=exc)
            else:
                _settle(outer, result=inner.result())

        outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)
        inner.add_done_callback(done)

    def _retry_or_give_up(self, source: AudioSource, outer: Future[MoodResult | Exception],
                          attempt: int, broken: ProcessPoolExecutor) -> None:
        self._restart(broken)
        if attempt < MAX_TRIES:
            self._try(source, outer, attempt + 1)
            return
        from mer_models.audio import source_name

        tries = "1 try" if attempt == 1 else f"{attempt} tries"
        _settle(outer, result=WorkerDiedError(
            source_name(source), f"a classification worker died while analysing it ({tries}; "
                                 "killed, or out of memory?)"))

    async def classify(self, source: AudioSource) -> MoodResult | Exception:
        """:meth:`submit`, awaited without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(source))

    def map(self, sources: Iterable[AudioSource], *, chunksize: int = 1
            ) -> list[MoodResult | Exception]:
        """Classify many inputs; one entry per input, in order."""
        items = list(sources)
        with self._lock:
            executor = self._executor
        results: list[MoodResult | Exception] = []
        try:
            for result in executor.map(_classify_in_worker, items, chunksize=chunksize):
                results.append(result)
        except BrokenProcessPool:
            self._restart(executor)
            rest = [self.submit(s) for s in items[len(results):]]
            results.extend(f.result() for f in rest)
        return results

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the workers; queued inputs that have not started are dropped."""
        with self._lock:
            self._closed = True
            executor = self._executor
        executor.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()


def _settle(future: Future[MoodResult | Exception], *, result: MoodResult | Exception | None = None,
            exception: BaseException | None = None) -> None:
    """Complete ``future`` unless its caller cancelled it meanwhile."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            assert result is not None
            future.set_result(result)
    except InvalidStateError:
        pass


_worker_engine: MoodEngine | None = None
_worker_error: MerError | None = None


def _init_worker(spec: EngineSpec, parent_pid: int) -> None:
    global _worker_engine, _worker_error
    from threadpoolctl import threadpool_limits

    from mer_models.engine import MoodEngine

    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True,
                     name="parent-watch").start()
    # One process per core: BLAS/OpenMP threads inside each worker would only fight over the
    # same cores (measured: 9.0 clips/s with them, 21 without, docs/BENCHMARKS.md).
    threadpool_limits(limits=1)
    try:
        _worker_engine = MoodEngine(spec.models_dir, config=spec.config, threads=1,
                                    prefer_gpu=spec.prefer_gpu)
    except MerError as exc:
        # Raised here it would end the process, which breaks the whole pool and hides why
        # (a model file changed on disk since the parent loaded it): each input says it.
        _worker_error = exc
        return
    _worker_engine.warm_up()


def _exit_with_parent(parent_pid: int) -> None:
    # A parent killed with SIGKILL cannot stop its pool; the orphan is re-parented, so a
    # changed parent pid means ours is gone.
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(0)


def _classify_in_worker(source: AudioSource) -> MoodResult | Exception:
    if _worker_engine is None:
        if _worker_error is not None:
            from mer_models.audio import source_name

            return MerError(f"{source_name(source)}: the worker could not load the models: "
                            f"{_worker_error}")
        raise RuntimeError("a WorkerPool task ran in a process without its initializer")
    return _worker_engine.try_classify(source)
