"""Which models are live, and changing them safely: retrain behind a gate, swap, roll back.

The models home (``<data_dir>/models``) holds versioned model sets and a pointer to the live
one::

    live.json        {"live": "v2", "previous": ["shipped"]}, replaced atomically (os.replace)
    sets/<id>/       a set's model cards and artifacts, never changed once installed
    runs/job-<n>/    a retrain's run directory while it runs (removed afterwards)

The set ``shipped`` is the base folder (the shipped ``mer_models/weights``, or
``MER_MODELS_DIR``), referenced and never written; it is live until a retrain installs a set.
When ``MER_MODELS_DIR`` is set the user pinned the models: that folder is always live, and
retrain and rollback are refused.

A retrain runs the training command (``python -m train models`` by default) in a child
process with a time limit, then gates on the validation figures the cards carry (the
out-of-fold figures of the artist-disjoint folds, :data:`GATED_METRICS`): the new set goes
live only when every figure is at least the live set's minus the tolerance, its artifacts
match the sha256 of their cards, and (through ``verify``) it loads. Anything else leaves the
live models untouched and says why; every outcome is a ``retrain_jobs`` row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import shlex
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from bot.service.errors import ServiceError
from bot.storage.errors import ModelConflictError, StorageError
from mer_models.card import ModelCard
from mer_models.engine import DEFAULT_MODELS_DIR, LOADERS
from mer_models.errors import MerError

if TYPE_CHECKING:
    from bot.settings import Settings
    from bot.storage.models import RetrainJob
    from bot.storage.store import Store

logger = logging.getLogger(__name__)

#: Id of the base set: the shipped weights (or ``MER_MODELS_DIR``), referenced in place.
BASE_SET: Final = "shipped"
#: Validation figures compared by the gate (out-of-fold means over the artist-disjoint folds),
#: of the fused prediction; a set of one model is gated on that model's own figures.
GATED_METRICS: Final = ("cv_macro_f1_mean", "cv_accuracy_mean", "cv_valence_accuracy_mean",
                        "cv_arousal_accuracy_mean")
#: Earlier sets kept for rollback.
KEEP_PREVIOUS: Final = 3
#: Lines of the training output kept for the job's log (and the reason of a crash).
TAIL_LINES: Final = 20
_LOG_MAX = 8000
_LINE_MAX = 300
_FUSED: Final = frozenset(LOADERS)
_LABELS = {"cv_macro_f1_mean": "macro-F1", "cv_accuracy_mean": "accuracy",
           "cv_valence_accuracy_mean": "valence accuracy",
           "cv_arousal_accuracy_mean": "arousal accuracy"}
_SET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: How long a killed training process gets to stop after SIGTERM before SIGKILL.
_TERM_GRACE_S = 5.0

Outcome = Literal["installed", "worse", "crashed", "timeout", "refused", "cancelled"]
#: Receives the newest line of the training output (throttled).
Progress = Callable[[str], Awaitable[None]]
#: Loads a set's folder as the engine would; raises ServiceError or MerError to refuse it.
Verify = Callable[[Path], Awaitable[None]]


class RetrainBusyError(ServiceError):
    """A retrain is running; the operation waits for it to finish."""


@dataclass(frozen=True)
class ModelInfo:
    """One model of a set, as its card describes it."""

    name: str
    version: str
    kind: str
    fusion_weight: float
    macro_f1: float | None
    sha256: str

    @property
    def display_name(self) -> str:
        """``name-version``."""
        return f"{self.name}-{self.version}"


@dataclass(frozen=True)
class ModelSet:
    """A set of models and the validation figures of its fused prediction.

    Attributes
    ----------
    id : str
        ``shipped`` or ``v<n>``.
    path : Path
        Its folder.
    models : tuple of ModelInfo
        The fused models (those the engine loads), in fusion order.
    figures : dict
        :data:`GATED_METRICS` the cards carry (empty: none).
    """

    id: str
    path: Path
    models: tuple[ModelInfo, ...]
    figures: dict[str, float]


@dataclass(frozen=True)
class JobInfo:
    """A retraining job as :meth:`ModelAdmin.status` lists it."""

    id: int
    requested_by: str
    status: str
    outcome: str
    reason: str
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: RetrainJob) -> JobInfo:
        """Read a job row (its log starts with ``<outcome>: <reason>``)."""
        first = job.log.partition("\n")[0]
        outcome, sep, reason = first.partition(": ")
        if not sep:
            outcome, reason = job.status, first
        return cls(job.id, job.requested_by, job.status, outcome, reason, job.created_at,
                   job.finished_at)


@dataclass(frozen=True)
class RetrainResult:
    """How a retrain ended.

    Attributes
    ----------
    job_id : int
        Its ``retrain_jobs`` row.
    outcome : {"installed", "worse", "crashed", "timeout", "refused", "cancelled"}
        Only ``installed`` changed the live models.
    reason : str
        One line saying why, safe to show to the bot's owner.
    set_id : str or None
        The set installed.
    new_figures, live_figures : dict
        The validation figures compared (empty when the run produced none).
    seconds : float
        How long it took.
    """

    job_id: int
    outcome: Outcome
    reason: str
    set_id: str | None = None
    new_figures: dict[str, float] = dataclasses.field(default_factory=dict)
    live_figures: dict[str, float] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    @property
    def installed(self) -> bool:
        """Whether the new models are live now."""
        return self.outcome == "installed"


@dataclass(frozen=True)
class AdminStatus:
    """The live set, the sets a rollback goes back to (newest last), and recent jobs."""

    live: ModelSet
    previous: tuple[str, ...]
    pinned: bool
    running: bool
    jobs: tuple[JobInfo, ...]


@dataclass(frozen=True)
class _Pointer:
    live: str
    previous: tuple[str, ...] = ()


@dataclass
class _Run:
    returncode: int | None
    timed_out: bool
    stdout: deque[str]
    stderr: deque[str]


class ModelAdmin:
    """The live model set, retraining, rollback and their history.

    Parameters
    ----------
    store : Store
        Where jobs and the model registry are recorded.
    home : Path
        The models home (sets, pointer, run folders); created when needed.
    base_dir : Path
        The base set ``shipped`` (default: the shipped weights); never written.
    command : sequence of str, optional
        The training command, to which ``--run <folder> --version <n>`` is appended
        (default: this Python's ``-m train models``).
    timeout_s : float
        Longest a training run may take before its process group is killed.
    tolerance : float
        How far below the live figures a new set's may be and still go live.
    pinned : bool
        The user pinned ``base_dir`` (``MER_MODELS_DIR``): it stays live, and retrain and
        rollback are refused.
    progress_every_s : float
        Shortest interval between two progress reports.
    """

    def __init__(self, store: Store, *, home: Path, base_dir: Path = DEFAULT_MODELS_DIR,
                 command: Sequence[str] | None = None, timeout_s: float = 4 * 3600.0,
                 tolerance: float = 0.002, pinned: bool = False,
                 progress_every_s: float = 2.0) -> None:
        self.store = store
        self.home = Path(home).absolute()
        self.base_dir = Path(base_dir).absolute()
        self.command = tuple(command or (sys.executable, "-m", "train", "models"))
        self.timeout_s = timeout_s
        self.tolerance = tolerance
        self.pinned = pinned
        self.progress_every_s = progress_every_s
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, store: Store) -> ModelAdmin:
        """The admin of ``<data_dir>/models`` with the engine settings' retrain command."""
        engine = settings.engine
        if engine.retrain_command:
            command = shlex.split(engine.retrain_command)
        else:
            command = [sys.executable, "-m", "train", "models"]
            if engine.retrain_data is not None:
                command += ["--data", str(engine.retrain_data.absolute())]
        return cls(store, home=settings.data_dir / "models",
                   base_dir=engine.models_dir or DEFAULT_MODELS_DIR, command=command,
                   timeout_s=engine.retrain_timeout_s, tolerance=engine.retrain_tolerance,
                   pinned=engine.models_dir is not None)

    @property
    def running(self) -> bool:
        """Whether a retrain (or a rollback) is under way."""
        return self._lock.locked()

    # --- the live set -------------------------------------------------------------------------

    def live_dir(self) -> Path:
        """The folder of the live set (what the service loads)."""
        return self._set_dir(self._pointer().live)

    async def live_set(self) -> ModelSet:
        """The live set with its models and figures."""
        pointer = self._pointer()
        return await asyncio.to_thread(self._read_set, pointer.live)

    async def status(self, *, jobs: int = 5) -> AdminStatus:
        """The live set, the rollback history and the ``jobs`` newest retraining jobs."""
        pointer = self._pointer()
        live = await asyncio.to_thread(self._read_set, pointer.live)
        rows = await self.store.recent_jobs(jobs)
        return AdminStatus(live, pointer.previous, self.pinned, self.running,
                           tuple(JobInfo.of(row) for row in rows))

    async def recover(self) -> int:
        """Close the jobs a stopped process left ``running``; returns how many."""
        return await self.store.fail_unfinished_jobs(
            "interrupted: the process stopped while it ran; the live models were not changed")

    # --- retrain --------------------------------------------------------------------------

    async def retrain(self, *, requested_by: str, progress: Progress | None = None,
                      verify: Verify | None = None) -> RetrainResult:
        """Train new models in a child process and make them live if they are no worse.

        Parameters
        ----------
        requested_by : str
            Who asked, for the job row (``discord:<user id>``, ``cli``).
        progress : callable, optional
            Awaited with the newest line the training printed (its standard output), at
            most every ``progress_every_s``.
        verify : callable, optional
            Awaited with the new set's folder before it goes live (the service loads it);
            raising ServiceError or MerError refuses the set.

        Returns
        -------
        RetrainResult
            Also recorded as a ``retrain_jobs`` row; only ``installed`` changed anything.

        Raises
        ------
        RetrainBusyError
            Another retrain is running.
        ServiceError
            The models are pinned by ``MER_MODELS_DIR``.
        """
        self.refuse_if_pinned("retrain")
        if self._lock.locked():
            raise RetrainBusyError("A retrain is already running: wait for it to finish.")
        async with self._lock:
            try:
                job = await self.store.start_job(requested_by)
            except StorageError as exc:
                raise ServiceError(f"could not start a retrain: {exc}") from exc
            started = time.monotonic()
            run_dir = self.home / "runs" / f"job-{job.id}"
            tail: list[str] = []
            try:
                result = await self._retrain(job.id, run_dir, progress, verify, tail)
            except asyncio.CancelledError:
                result = RetrainResult(job.id, "cancelled", "the retrain was cancelled (the bot "
                                       "is stopping); the live models were not changed")
                await self._record(result, tail)
                raise
            except Exception as exc:  # a bug: the live models stay, the job says so
                logger.exception("retrain job %d failed", job.id)
                result = RetrainResult(job.id, "refused", f"internal error "
                                       f"({type(exc).__name__}); the live models were not "
                                       "changed")
            finally:
                await asyncio.to_thread(shutil.rmtree, run_dir, True)
            result = dataclasses.replace(result, seconds=round(time.monotonic() - started, 1))
            await self._record(result, tail)
            logger.info("retrain job %d: %s: %s", job.id, result.outcome, result.reason)
            return result

    async def _retrain(self, job_id: int, run_dir: Path, progress: Progress | None,
                       verify: Verify | None, tail: list[str]) -> RetrainResult:
        live = await self.live_set()
        version = await self._next_version()
        await asyncio.to_thread(run_dir.mkdir, parents=True, exist_ok=True)
        argv = [*self.command, "--run", str(run_dir), "--version", version]
        logger.info("retrain job %d: %s", job_id, shlex.join(argv))
        run = await self._run(argv, progress)
        tail += [*(f"stderr: {line}" for line in run.stderr), *run.stdout]
        limit = _duration(self.timeout_s)
        if run.timed_out:
            return RetrainResult(job_id, "timeout", f"training ran past its limit of {limit} and "
                                 "was stopped; the live models were not changed")
        if run.returncode != 0:
            last = _last_words(run.stderr) or _last_words(run.stdout) or "no output"
            return RetrainResult(job_id, "crashed", f"training failed (exit status "
                                 f"{run.returncode}): {last}; the live models were not changed")
        cards = await asyncio.to_thread(_read_cards, run_dir / "models")
        fused = [card for _, card in cards if card.kind in _FUSED]
        if not fused:
            return RetrainResult(job_id, "refused", "the training wrote no models; the live "
                                 "models were not changed")
        new = set_figures(fused)
        ok, why = gate(new, live.figures, self.tolerance)
        if not ok:
            return RetrainResult(job_id, "worse", f"{why}; the live models were kept",
                                 new_figures=new, live_figures=live.figures)
        try:
            set_id = await asyncio.to_thread(self._install, run_dir / "models", live, version)
        except MerError as exc:
            return RetrainResult(job_id, "refused", f"the new models do not verify: "
                                 f"{_short(str(exc), self.home)}; the live models were not "
                                 "changed", new_figures=new, live_figures=live.figures)
        if verify is not None:
            try:
                await verify(self._set_dir(set_id))
            except (ServiceError, MerError) as exc:
                await asyncio.to_thread(shutil.rmtree, self._set_dir(set_id), True)
                return RetrainResult(job_id, "refused", f"the new models do not load: "
                                     f"{_short(str(exc), self.home)}; the live models were "
                                     "not changed", new_figures=new, live_figures=live.figures)
        await asyncio.to_thread(self._make_live, set_id)
        return RetrainResult(job_id, "installed", f"set {set_id} is live: {why}", set_id=set_id,
                             new_figures=new, live_figures=live.figures)

    async def _record(self, result: RetrainResult, tail: Sequence[str]) -> None:
        model_version_id = None
        if result.installed:
            ids = await self._register(self._set_dir(result.set_id or BASE_SET))
            model_version_id = ids[0] if ids else None
        log = f"{result.outcome}: {result.reason}\n"
        if result.set_id:
            log += f"set: {result.set_id}\n"
        if tail:
            log += "--- last lines of the training output ---\n" + "\n".join(tail)
        try:
            await self.store.finish_job(
                result.job_id, status="succeeded" if result.installed else "failed",
                log=log[:_LOG_MAX], model_version_id=model_version_id)
        except StorageError as exc:  # the outcome stands; the next start closes the job
            logger.error("retraining job %d: %s", result.job_id, exc)

    async def _run(self, argv: Sequence[str], progress: Progress | None) -> _Run:
        """Run the training command in its own process group, streaming and bounded."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MER_")}  # no secrets
        env["PYTHONUNBUFFERED"] = "1"
        repo = str(Path(__file__).resolve().parents[2])  # `-m train` from a source checkout
        env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
        run = _Run(None, False, deque(maxlen=TAIL_LINES), deque(maxlen=TAIL_LINES))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=self.home, env=env, start_new_session=True,
                limit=1 << 20)
        except OSError as exc:  # no such program, not executable
            run.returncode = 127
            run.stderr.append(f"cannot start {Path(argv[0]).name}: {exc.strerror or exc}")
            return run
        last_report = -float("inf")

        async def pump(stream: asyncio.StreamReader | None, lines: deque[str],
                       report: bool) -> None:
            nonlocal last_report
            if stream is None:
                return
            while True:
                try:
                    raw = await stream.readline()
                except ValueError:  # a line past the limit: dropped
                    continue
                if not raw:
                    return
                line = _clean(raw)
                if not line:
                    continue
                lines.append(line)
                now = time.monotonic()
                if report and progress is not None and now - last_report >= self.progress_every_s:
                    last_report = now
                    await _report(progress, line)

        try:
            async with asyncio.timeout(self.timeout_s):
                await asyncio.gather(pump(proc.stdout, run.stdout, True),
                                     pump(proc.stderr, run.stderr, False))
                run.returncode = await proc.wait()
        except TimeoutError:
            run.timed_out = True
            await _stop(proc)
        except BaseException:  # cancelled: the training must not outlive the request
            await _stop(proc)
            raise
        return run

    async def _next_version(self) -> str:
        rows = await self.store.model_versions()
        versions = [row.version for row in rows if row.kind in _FUSED]
        versions += await asyncio.to_thread(self._set_versions)
        return str(max((int(v) for v in versions if v.isdigit()), default=1) + 1)

    def _set_versions(self) -> list[str]:
        folders = [self.base_dir, *sorted((self.home / "sets").glob("*"))]
        return [card.version for folder in folders if folder.is_dir()
                for _, card in _read_cards(folder) if card.kind in _FUSED]

    # --- sets on disk (called in worker threads) -------------------------------------------

    def _install(self, models: Path, live: ModelSet, version: str) -> str:
        """Copy a run's models (and the live set's supporting models: musicnn networks, the
        Spotify-feature model) into a new set, verify every artifact, and move it in place."""
        sets = self.home / "sets"
        sets.mkdir(parents=True, exist_ok=True)
        set_id, n = f"v{version}", 1
        while (sets / set_id).exists():
            n += 1
            set_id = f"v{version}-{n}"
        staging = sets / f".staging-{set_id}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            for path in sorted(models.iterdir()):
                if path.is_file():
                    shutil.copy2(path, staging / path.name)
            for card_path, card in _read_cards(live.path):
                artifact = card.artifact_path(card_path)
                if (card.kind in _FUSED or (staging / card_path.name).exists()
                        or (staging / artifact.name).exists() or not artifact.is_file()):
                    continue
                shutil.copy2(card_path, staging / card_path.name)
                for path in card.artifact_paths(card_path):  # the ONNX conversion too
                    if path.is_file():
                        shutil.copy2(path, staging / path.name)
            for card_path, card in _read_cards(staging):
                card.verify(card_path)  # sha256 of every artifact, before anything goes live
            os.replace(staging, sets / set_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return set_id

    def _make_live(self, set_id: str) -> None:
        old = self._pointer()
        previous = (*old.previous, old.live)[-KEEP_PREVIOUS:] if old.live != set_id else \
            old.previous
        self._write_pointer(_Pointer(set_id, previous))
        keep = {set_id, *previous}
        for folder in (self.home / "sets").glob("*"):
            if folder.name not in keep and not folder.name.startswith(".staging-"):
                shutil.rmtree(folder, ignore_errors=True)

    def _pointer(self) -> _Pointer:
        return _Pointer(BASE_SET) if self.pinned else _read_pointer(self.home)

    def _write_pointer(self, pointer: _Pointer) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        path = self.home / "live.json"
        tmp = path.with_name(f".live.json.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"live": pointer.live, "previous": list(pointer.previous)}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # atomic: a reader sees the old pointer or the new one

    def _set_dir(self, set_id: str) -> Path:
        return self.base_dir if set_id == BASE_SET else self.home / "sets" / set_id

    def _read_set(self, set_id: str) -> ModelSet:
        folder = self._set_dir(set_id)
        cards = [card for _, card in _read_cards(folder) if card.kind in _FUSED]
        order = list(LOADERS)
        cards.sort(key=lambda c: order.index(c.kind))
        models = tuple(ModelInfo(c.name, c.version, c.kind, c.fusion_weight,
                                 _number(c.metrics.get("cv_macro_f1_mean")), c.sha256)
                       for c in cards)
        return ModelSet(set_id, folder, models, set_figures(cards))

    # --- rollback --------------------------------------------------------------------------

    async def rollback(self, *, verify: Verify | None = None) -> ModelSet:
        """Make the previous set live again.

        Parameters
        ----------
        verify : callable, optional
            As for :meth:`retrain`: awaited with the set's folder before it goes live.

        Returns
        -------
        ModelSet
            The set now live.

        Raises
        ------
        ServiceError
            There is no earlier set, it is gone, it does not load, the models are pinned, or
            a retrain is running.
        """
        self.refuse_if_pinned("roll back")
        if self._lock.locked():
            raise RetrainBusyError("A retrain is running: roll back when it has finished.")
        async with self._lock:
            pointer = self._pointer()
            if not pointer.previous:
                raise ServiceError("There is no earlier model set to roll back to.")
            target = pointer.previous[-1]
            folder = self._set_dir(target)
            if not folder.is_dir():
                raise ServiceError(f"The earlier model set {target} is gone from the models "
                                   "folder; nothing was changed.")
            if verify is not None:
                try:
                    await verify(folder)
                except (ServiceError, MerError) as exc:
                    raise ServiceError(f"Set {target} does not load "
                                       f"({_short(str(exc), self.home)}); nothing was "
                                       "changed.") from exc
            await asyncio.to_thread(self._write_pointer, _Pointer(target, pointer.previous[:-1]))
            await self._register(folder)
            logger.info("rolled back from set %s to %s", pointer.live, target)
            return await asyncio.to_thread(self._read_set, target)

    # --- helpers -----------------------------------------------------------------------------

    async def _register(self, folder: Path) -> list[int]:
        """Record a set's fused models in the registry as the live ones."""
        cards = await asyncio.to_thread(_read_cards, folder)
        ids = []
        try:
            for _, card in cards:
                if card.kind not in _FUSED:
                    continue
                try:
                    row = await self.store.register_model(card.name, card.version, card.kind,
                                                          card.sha256, card.metrics, live=True)
                except ModelConflictError as exc:
                    logger.warning("model registry: %s", exc)
                    continue
                ids.append(row.id)
            await self.store.keep_live(ids)
        except StorageError as exc:  # the set on disk is live; the registry lags behind
            raise ServiceError(f"the models are live but the registry was not updated: {exc}"
                               ) from exc
        return ids

    def refuse_if_pinned(self, what: str) -> None:
        """Raise ServiceError (saying how to unpin) when the models are pinned: ``what``
        ("retrain", "roll back") cannot be done."""
        if self.pinned:
            raise ServiceError(f"Cannot {what}: the models are pinned by MER_MODELS_DIR; unset "
                               "it to manage them from here.")


def set_figures(cards: Iterable[ModelCard]) -> dict[str, float]:
    """The validation figures of a set's fused prediction (:data:`GATED_METRICS`).

    Parameters
    ----------
    cards : iterable of ModelCard
        The set's fused models.

    Returns
    -------
    dict
        From the cards' ``metrics["fused"]`` (written by ``python -m train fuse`` into every
        fused card), or a lone model's own figures; empty when they are unknown or the
        cards disagree.
    """
    cards = [c for c in cards if c.kind in _FUSED]
    source: object
    if len(cards) == 1:
        source = cards[0].metrics
    else:
        blocks = [c.metrics.get("fused") for c in cards]
        if not blocks or not all(isinstance(b, dict) for b in blocks):
            return {}
        source = blocks[0]
        if any(b != source for b in blocks):
            return {}
    if not isinstance(source, dict):
        return {}
    return {key: float(value) for key in GATED_METRICS
            if (value := _number(source.get(key))) is not None}


def gate(new: dict[str, float], live: dict[str, float], tolerance: float) -> tuple[bool, str]:
    """Whether a new set may replace the live one, and why (one phrase).

    Every figure of :data:`GATED_METRICS` the live set reports must be reported by the new
    set and be at least the live figure minus ``tolerance``. A live set without figures
    cannot be worse than anything: the new set passes on its own macro-F1.
    """
    if "cv_macro_f1_mean" not in new:
        return False, "the new models carry no validation macro-F1 in their cards"
    headline = f"macro-F1 {new['cv_macro_f1_mean']:.4f}"
    if not live:
        return True, f"{headline}; the live models carry no validation figures to compare"
    for key in GATED_METRICS:
        if key not in live:
            continue
        if key not in new:
            return False, f"the new models do not report the {_LABELS[key]} the live ones do"
        if new[key] < live[key] - tolerance:
            return False, (f"worse on the validation folds: {_LABELS[key]} {new[key]:.4f} "
                           f"against the live models' {live[key]:.4f}")
    return True, (f"{headline} against the live models' "
                  f"{live.get('cv_macro_f1_mean', float('nan')):.4f}")


def live_models_dir(settings: Settings) -> Path:
    """The live set's folder for these settings, without a database (for ``mer models``)."""
    if settings.engine.models_dir is not None:
        return settings.engine.models_dir
    home = settings.data_dir / "models"
    live = _read_pointer(home).live
    return DEFAULT_MODELS_DIR if live == BASE_SET else home / "sets" / live


def _read_pointer(home: Path) -> _Pointer:
    path = home / "live.json"
    if not path.is_file():
        return _Pointer(BASE_SET)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pointer = _Pointer(str(data["live"]), tuple(str(p) for p in data.get("previous", ())))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.error("%s is unreadable (%s): serving the base set", path, exc)
        return _Pointer(BASE_SET)
    if not all(_SET_ID.match(s) for s in (pointer.live, *pointer.previous)):
        logger.error("%s names an invalid set: serving the base set", path)
        return _Pointer(BASE_SET)
    return pointer


def _read_cards(folder: Path) -> list[tuple[Path, ModelCard]]:
    cards = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            cards.append((path, ModelCard.load(path)))
        except MerError:
            logger.warning("%s is not a model card: skipped", path)
    return cards


async def _report(progress: Progress, line: str) -> None:
    try:
        await asyncio.wait_for(progress(line), timeout=15)
    except Exception:  # a slow or failing reporter must not stop the training
        logger.warning("retrain progress report failed", exc_info=True)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not stopped in a few seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), _TERM_GRACE_S)
            break
        except TimeoutError:
            continue
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


def _clean(raw: bytes) -> str:
    line = _ANSI.sub("", raw.decode("utf-8", "replace")).strip()
    return line if len(line) <= _LINE_MAX else line[:_LINE_MAX - 1] + "…"


def _last_words(lines: Iterable[str]) -> str:
    """The last line with words in it (not a frame of a rich traceback panel)."""
    for line in reversed(list(lines)):
        text = line.strip("│╭╮╰╯─ ")
        if any(c.isalnum() for c in text):
            return text
    return ""


def _short(text: str, *folders: Path) -> str:
    """A message without the folders' absolute paths (``<folder>/x`` becomes ``x``)."""
    for folder in folders:
        text = re.sub(re.escape(str(folder)) + r"[^\s:]*/", "", text)
    return " ".join(text.split())


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
