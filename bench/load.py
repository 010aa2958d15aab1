"""Load: concurrent ``/mood track`` commands, an MPD queue burst, and the event loop's lag.

Usage::

    python bench/load.py discord [--commands 200] [--tracks 40] [--workers N] [--before]
    python bench/load.py mpd [--changes 50] [--tracks 40] [--mode annotate|suggest]
                             [--gap-ms 0] [--freeze]
    python bench/load.py all [...]
    (any of them: [--stacks] [--debug] [--json])

``discord``
    A real :class:`~bot.service.MoodService` on a temporary data folder (the shipped models
    unless ``--models``; local files refused, as the bot has it) and :class:`MoodBot` built as
    ``mer bot run`` builds it (``freeze_heap``), without a gateway. The tracks are synthetic
    30-second MP3 files served over HTTP by a child process on 127.0.0.1
    (``python -m http.server``; the only setting changed from the bot's is
    ``allowed_networks=127.0.0.1/32``), so every command downloads its preview through the
    guarded HTTP client as it would from a catalogue. The service is warmed first (two
    ``/mood track`` per worker process, one with a thread: models loaded everywhere,
    matplotlib imported; not measured), then ``--commands`` interactions, each from its own
    user (cooldowns are per user), over ``--tracks`` URLs (each asked several times, for
    single flight), are handed to the command tree at once, as discord.py's gateway handler
    does (one task each). Measured per command: the time to its deferral and to its answer.
    Checked: every command answered with a track, one classification per distinct track, one
    prediction per track for the live models. ``--before`` builds the bot as it was before
    the lag fixes (no ``freeze_heap``, charts in parallel threads, no collection after each).
``mpd``
    A throwaway MPD (``tests/fakes/mpd.py``: null output, a free port, never 6600) with
    ``--tracks`` synthetic FLAC files, the service (local files allowed, ``--workers`` 1 as
    ``mer listen`` has it: a thread) and the :class:`~bot.service.listening.Listener` on
    :class:`~bot.player.mpd.MpdPlayer` (``annotate``: stickers written, or ``suggest``),
    classifying the whole queue ahead. A second MPD client (a thread) fires ``--changes``
    queue changes, back to back or ``--gap-ms`` apart (adds, inserts, deletes, moves, two
    plays, one clear). Measured: the time until the listener has classified (or reported)
    every track of the final queue. ``--freeze`` freezes the start-up heap as the bot does
    (``mer listen`` does not).

During both, :class:`LagMonitor` sleeps 10 ms in a loop on the event loop and records how
late it wakes (target: never over 50 ms), the garbage collections (with their CPU time) and,
on Linux, how long the loop thread waited for a CPU; ``--stacks`` also samples the loop
thread's stack (and the others') each time it is late past the threshold, and ``--debug``
runs asyncio in debug mode and collects its "Executing ... took" warnings
(``slow_callback_duration`` = the threshold).

Prints a summary; ``--json`` prints the figures as JSON instead; the exit status is 1 when a
correctness check failed. The figures go into docs/RELIABILITY.md by hand, with the command
and the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.discord.console.interaction import ConsoleInteraction, Sent  # noqa: E402
from bot.service.listening import Listener  # noqa: E402

if TYPE_CHECKING:
    from bot.discord.bot import MoodBot
    from bot.service import MoodService
    from bot.service.listening import ListenEvent
    from bot.service.mood import TrackMood
    from bot.service.player import QueuedTrack
    from bot.sources.models import Preview

#: The lag target of the issue: the loop never wakes more than this late.
TARGET_MS = 50.0


# --- the event-loop lag monitor --------------------------------------------------------------


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max of ``values`` (all 0.0 when there are none)."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    array = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(array, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99),
            "max": float(array.max())}


@dataclass(frozen=True)
class LagStats:
    """How late the monitor's ticks woke, over a stretch of time.

    Attributes
    ----------
    samples : int
        Ticks measured.
    p50_ms, p95_ms, p99_ms, max_ms : float
        Lateness of a tick (milliseconds past its 10 ms sleep).
    over : int
        Ticks later than ``threshold_ms``.
    threshold_ms : float
        The target.
    """

    samples: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    over: int
    threshold_ms: float

    @property
    def met(self) -> bool:
        """Whether no tick was later than the threshold."""
        return self.over == 0

    def line(self) -> str:
        """``p50 0.3 ms  p95 1.2 ms  max 4.0 ms  over 50 ms: 0 of 812 ticks``."""
        return (f"p50 {self.p50_ms:.1f} ms  p95 {self.p95_ms:.1f} ms  max {self.max_ms:.1f} ms  "
                f"over {self.threshold_ms:.0f} ms: {self.over} of {self.samples} ticks")


@dataclass(frozen=True)
class Stall:
    """The loop thread's stack, sampled while the loop was late past the threshold.

    Attributes
    ----------
    at_s : float
        When (seconds since the monitor started).
    late_ms : float
        How late the loop was when sampled (the stall may last longer).
    stack : tuple of str
        ``file:line function`` frames, innermost last.
    others : tuple of tuple of str
        The innermost frames of every other thread of the process at that moment.
    """

    at_s: float
    late_ms: float
    stack: tuple[str, ...]
    others: tuple[tuple[str, ...], ...] = ()


class LagMonitor:
    """Measure how late the event loop runs a task that sleeps ``interval_s`` in a loop.

    Use as ``async with LagMonitor() as monitor:`` (or :meth:`start` and :meth:`stop`) inside
    the running loop; :meth:`mark` and :meth:`stats` give the figures of one stretch.

    Parameters
    ----------
    interval_s : float
        How long each tick sleeps (default 10 ms).
    threshold_s : float
        The target: a tick later than this counts in :attr:`LagStats.over` (default 50 ms).
    sample_stacks : bool
        Also run a watchdog thread that samples the loop thread's stack whenever a tick is
        overdue by more than ``threshold_s`` (:attr:`stalls`), to find what holds the loop.
    """

    def __init__(self, interval_s: float = 0.010, threshold_s: float = TARGET_MS / 1000, *,
                 sample_stacks: bool = False) -> None:
        if interval_s <= 0 or threshold_s <= 0:
            raise ValueError("interval_s and threshold_s must be positive")
        self.interval_s = interval_s
        self.threshold_s = threshold_s
        self.sample_stacks = sample_stacks
        #: Lateness of each tick, in seconds, and when it woke (``perf_counter``).
        self.lags: list[float] = []
        self.woke: list[float] = []
        #: Seconds the loop thread waited for a CPU (runnable, not running: the machine was
        #: busy) during each tick; Linux only (elsewhere 0).
        self.cpu_waits: list[float] = []
        #: Stacks sampled during stalls (with ``sample_stacks``).
        self.stalls: list[Stall] = []
        #: Garbage collections: (ticks recorded before it, generation, seconds). A
        #: collection holds the GIL, so every thread, the loop's included, waits for it.
        self.collections: list[tuple[int, int, float]] = []
        self._gc_started = 0.0
        self._gc_cpu = 0.0
        #: CPU seconds of each collection (its thread's), and objects it freed.
        self.collection_cpu: list[float] = []
        self.collected: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._started = 0.0
        self._last = 0.0

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def start(self) -> None:
        """Start ticking on the running loop (and the watchdog thread, if asked).

        Raises
        ------
        RuntimeError
            Already started, or no loop is running.
        """
        if self._task is not None:
            raise RuntimeError("the lag monitor is already running")
        self._started = self._last = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._tick(), name="lag-monitor")
        gc.callbacks.append(self._on_gc)
        if self.sample_stacks:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._watch, args=(threading.get_ident(),),
                                            name="lag-watchdog", daemon=True)
            self._thread.start()

    async def stop(self) -> LagStats:
        """Stop ticking; returns the figures of the whole run."""
        task, self._task = self._task, None
        if task is not None:
            gc.callbacks.remove(self._on_gc)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            await asyncio.to_thread(thread.join)
        return self.stats()

    def mark(self) -> int:
        """Where the ticks recorded so far end: the start of a stretch for :meth:`stats`."""
        return len(self.lags)

    def stats(self, start: int = 0, end: int | None = None) -> LagStats:
        """The figures of ticks ``start`` to ``end`` (see :meth:`mark`); default: all."""
        chosen = self.lags[start:end]
        ms = percentiles([lag * 1000 for lag in chosen])
        return LagStats(samples=len(chosen), p50_ms=ms["p50"], p95_ms=ms["p95"],
                        p99_ms=ms["p99"], max_ms=ms["max"],
                        over=sum(lag > self.threshold_s for lag in chosen),
                        threshold_ms=self.threshold_s * 1000)

    def late_ticks(self, start: int = 0, end: int | None = None) -> dict[str, float]:
        """The ticks of a stretch later than the threshold: how late in all (ms), and how
        much of that the loop thread spent waiting for a CPU (ms) rather than for the GIL
        or in code of its own."""
        late = [(lag, wait) for lag, wait in zip(self.lags[start:end],
                                                  self.cpu_waits[start:end], strict=True)
                if lag > self.threshold_s]
        return {"count": len(late), "late_ms": round(sum(lag for lag, _ in late) * 1000, 1),
                "cpu_wait_ms": round(sum(min(w, lag + self.interval_s) for lag, w in late)
                                     * 1000, 1)}

    def gc_pauses(self, start: int = 0, end: int | None = None) -> dict[str, Any]:
        """Garbage collections during ticks ``start`` to ``end``: count per generation,
        longest pause (ms), and how many lasted longer than the threshold."""
        chosen = [(gen, s, cpu, freed) for (tick, gen, s), cpu, freed
                  in zip(self.collections, self.collection_cpu, self.collected, strict=True)
                  if tick >= start and (end is None or tick < end)]
        full = [(s, cpu, freed) for gen, s, cpu, freed in chosen if gen == 2]
        return {"count": dict(Counter(f"gen{gen}" for gen, *_ in chosen)),
                "max_ms": max((s * 1000 for _, s, *_ in chosen), default=0.0),
                "over": sum(s > self.threshold_s for _, s, *_ in chosen),
                "full": [{"ms": round(s * 1000, 1), "cpu_ms": round(cpu * 1000, 1),
                          "freed": freed} for s, cpu, freed in full]}

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            self._gc_cpu = time.thread_time()
        else:
            self.collections.append((len(self.lags), int(info["generation"]),
                                     time.perf_counter() - self._gc_started))
            self.collection_cpu.append(time.thread_time() - self._gc_cpu)
            self.collected.append(int(info["collected"]))

    def worst(self, start: int = 0, end: int | None = None, n: int = 5
              ) -> list[tuple[float, float]]:
        """The ``n`` latest ticks of a stretch: (seconds since start, lateness in ms)."""
        chosen = list(zip(self.woke[start:end], self.lags[start:end], strict=True))
        chosen.sort(key=lambda pair: pair[1], reverse=True)
        return [(woke - self._started, lag * 1000) for woke, lag in chosen[:n]]

    async def _tick(self) -> None:
        waited = _runqueue_wait()
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            now = time.perf_counter()
            self._last = now
            self.lags.append(max(0.0, now - before - self.interval_s))
            self.woke.append(now)
            total = _runqueue_wait()
            self.cpu_waits.append(total - waited)
            waited = total

    def _watch(self, loop_thread: int) -> None:
        stalled = False
        while not self._stopping.wait(self.interval_s / 2):
            late = time.perf_counter() - self._last - self.interval_s
            if late <= self.threshold_s:
                stalled = False
                continue
            if stalled:
                continue
            stalled = True
            frame = sys._current_frames().get(loop_thread)
            if frame is None:
                continue
            others = tuple(_frames(f, 4) for ident, f in sys._current_frames().items()
                           if ident not in (loop_thread, threading.get_ident()))
            self.stalls.append(Stall(time.perf_counter() - self._started, late * 1000,
                                     _frames(frame, 14), others))


def _frames(frame: Any, depth: int) -> tuple[str, ...]:
    return tuple(f"{_short(f.filename)}:{f.lineno} {f.name}"
                 for f in traceback.extract_stack(frame)[-depth:])


def _runqueue_wait() -> float:
    """Seconds this thread has waited on a run queue since it started (Linux; else 0)."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as stats:
            return int(stats.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    with contextlib.suppress(ValueError):
        return str(Path(filename).relative_to(ROOT))
    return filename


def stall_summary(stalls: Sequence[Stall], top: int = 5) -> list[dict[str, Any]]:
    """The most frequent stall stacks (by their five innermost frames), with counts."""
    groups: Counter[tuple[str, ...]] = Counter(s.stack[-5:] for s in stalls)
    worst: dict[tuple[str, ...], Stall] = {}
    for stall in stalls:
        key = stall.stack[-5:]
        if key not in worst or stall.late_ms > worst[key].late_ms:
            worst[key] = stall
    return [{"count": count, "late_ms_max": worst[stack].late_ms, "stack": list(stack),
             "other_threads": [list(frames) for frames in worst[stack].others]}
            for stack, count in groups.most_common(top)]


class SlowCallbacks(logging.Handler):
    """Collects asyncio debug mode's ``Executing <...> took N seconds`` warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the message of a slow-callback warning."""
        message = record.getMessage()
        if message.startswith("Executing"):
            self.seen.append(message)


# --- shared set-up ---------------------------------------------------------------------------


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages of the machine."""
    return [round(x, 2) for x in os.getloadavg()]


def write_clips(folder: Path, names: Sequence[str], seconds: float) -> list[Path]:
    """Synthetic mood clips (``tests/synth.py``), one MP3 per name, moods in turn."""
    import soundfile as sf

    from tests.synth import SR, mood_clip

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        sf.write(path, mood_clip(f"Q{i % 4 + 1}", seconds=seconds, seed=i), SR, format="MP3")
        paths.append(path)
    return paths


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (never MPD's 6600)."""
    from tests.fakes.mpd import free_port as port

    return port()


@contextlib.contextmanager
def file_server(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 from a child process; yields the base URL.

    A child process (``python -m http.server``), so that serving costs the measured event
    loop nothing but the downloads it makes, as a catalogue's CDN would.
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(folder)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the HTTP file server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def count_classifications(service: MoodService) -> Counter[str]:
    """Count the classifications the service runs, by the track's source id.

    Wraps the service's one classification step (``_classify_and_store``, where single
    flight ends) on this instance: answers from the database and waiters of a
    classification under way are not counted.
    """
    counts: Counter[str] = Counter()
    original = service._classify_and_store

    async def counted(preview: Preview) -> TrackMood:
        counts[preview.track.provider_id] += 1
        return await original(preview)

    service._classify_and_store = counted  # type: ignore[method-assign]
    return counts


async def predictions_per_track(service: MoodService, provider: str
                                ) -> dict[str, int]:
    """``{provider_id: predictions for the live models}`` of every stored source of
    ``provider`` (0: a stored track without one)."""
    from sqlalchemy import func, select

    from bot.storage.models import Prediction, TrackSource

    key = service.models_key
    async with service.store.sessions() as session:
        sources = (await session.execute(
            select(TrackSource.provider_id, TrackSource.track_id)
            .where(TrackSource.provider == provider))).all()
        counts = dict((await session.execute(
            select(Prediction.track_id, func.count()).where(Prediction.models_key == key)
            .group_by(Prediction.track_id))).all())
    return {str(pid): int(counts.get(tid, 0)) for pid, tid in sources}


def _settings(data_dir: Path, *, workers: int | None, models: Path | None,
              n_windows: int | None, **sections: dict[str, Any]) -> Any:
    from bot.settings import Settings

    engine: dict[str, Any] = {}
    if workers is not None:
        engine["workers"] = workers
    if models is not None:
        engine["models_dir"] = models
    if n_windows is not None:
        engine["n_windows"] = n_windows
    return Settings.load(None, data_dir=data_dir, engine=engine, **sections)


# --- discord: concurrent /mood track ---------------------------------------------------------


class _TimedLog(list[Sent]):
    """An interaction's record of what the bot sent, with when (``perf_counter``)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[tuple[str, float]] = []

    def append(self, sent: Sent) -> None:
        self.times.append((sent.kind, time.perf_counter()))
        super().append(sent)


class TimedInteraction(ConsoleInteraction):
    """A console interaction that also records when each answer was sent.

    Parameters
    ----------
    client : discord.Client
        The bot, logged in.
    data : dict
        The slash command's ``data`` payload.
    user_id : int
        Who asks (cooldowns are per user).
    """

    def __init__(self, client: Any, data: dict[str, Any], *, user_id: int) -> None:
        import discord

        super().__init__(client, discord.InteractionType.application_command, data,
                         user_id=user_id)
        log = _TimedLog()
        self.sent = log
        self.response.log = log
        self.times = log.times
        self.arrived = 0.0

    def delay(self, kinds: tuple[str, ...]) -> float | None:
        """Seconds from arrival to the first answer of one of ``kinds`` (None: never)."""
        return next((t - self.arrived for kind, t in self.times if kind in kinds), None)

    @property
    def answered_with_track(self) -> bool:
        """Whether the final answer is a track: an embed with its chart, no error line."""
        final = [s for s in self.sent if s.kind in ("followup", "message")]
        return bool(final) and bool(final[-1].embeds) and bool(final[-1].files)

    @property
    def error_text(self) -> str:
        """What the user read instead of a track ("no answer" when nothing came)."""
        final = [s for s in self.sent if s.kind in ("followup", "message")]
        return (final[-1].text.strip() or "(empty answer)") if final else "no answer"


def mood_track(bot: MoodBot, query: str, user_id: int) -> TimedInteraction:
    """A ``/mood track query:<query>`` interaction from ``user_id``."""
    from bot.discord.console.interaction import command_data

    data = command_data("mood track", [{"type": 3, "name": "query", "value": query}])
    return TimedInteraction(bot, data, user_id=user_id)


async def fire(bot: MoodBot, interactions: Sequence[TimedInteraction]) -> float:
    """Hand every interaction to the command tree at once, as the gateway handler does
    (one task each); returns the seconds until the last finished."""
    from bot.discord.console.interaction import invoke

    async def one(interaction: TimedInteraction) -> None:
        await invoke(bot.tree, interaction)

    start = time.perf_counter()
    tasks = []
    for interaction in interactions:
        interaction.arrived = time.perf_counter()
        tasks.append(asyncio.create_task(one(interaction)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


@dataclass
class DiscordOptions:
    """What :func:`run_discord` measures (see the module's description)."""

    commands: int = 200
    tracks: int = 40
    workers: int | None = None
    models: Path | None = None
    n_windows: int | None = None
    seconds: float = 30.0
    seed: int = 0
    stacks: bool = False
    before: bool = False


def _charts_as_before() -> Callable[[], None]:
    """Draw charts as the mood cog did before the lag fixes: in the default executor's
    threads, in parallel, with no collection after each. Returns what undoes it."""
    from bot.discord.cogs.mood import cog

    fixed = cog._render

    async def render(draw: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(draw, *args)

    cog._render = render

    def restore() -> None:
        cog._render = fixed

    return restore


async def run_discord(options: DiscordOptions) -> dict[str, Any]:
    """Warm the service, fire ``options.commands`` concurrent ``/mood track``, check.

    Returns
    -------
    dict
        Counts, reply and deferral times (ms), lag figures, database checks (see
        :func:`print_discord`).
    """
    from bot.discord.bot import MoodBot
    from bot.discord.console.interaction import log_in
    from bot.service import MoodService
    from bot.sources.urlguard import url_identity

    out: dict[str, Any] = {"load_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="mer-load-") as tmp:
        folder = Path(tmp)
        names = [f"Load Artist {i % 10:02d} - Load Track {i:03d}.mp3"
                 for i in range(options.tracks)]
        await asyncio.to_thread(write_clips, folder / "audio", names, options.seconds)
        with file_server(folder / "audio") as base:
            urls = [f"{base}/{quote(name)}" for name in names]
            settings = _settings(folder / "data", workers=options.workers,
                                 models=options.models, n_windows=options.n_windows,
                                 sources={"allowed_networks": ["127.0.0.1/32"]})
            service = await MoodService.create(settings, allow_local_files=False)
            # Two warm-up commands per worker process (each loads the models); one in a thread.
            warm_names = [f"Warm Artist - Warm Track {i}.mp3" for i in
                          range(2 * service.workers if service.workers > 1 else 1)]
            await asyncio.to_thread(write_clips, folder / "audio", warm_names, options.seconds)
            warm_urls = [f"{base}/{quote(name)}" for name in warm_names]
            restore = _charts_as_before() if options.before else None
            try:
                # As `mer bot run` builds it (bot/discord/main.py), without the gateway.
                async with service, MoodBot(service, freeze_heap=not options.before) as bot:
                    log_in(bot)
                    await bot.setup_hook()
                    out["frozen_objects"] = gc.get_freeze_count()
                    counts = count_classifications(service)
                    out.update({"workers": service.workers, "models": service.versions})
                    async with LagMonitor(sample_stacks=options.stacks) as monitor:
                        # Warm: models in every worker, matplotlib, the first chart.
                        warm = [mood_track(bot, url, 900_000 + i)
                                for i, url in enumerate(warm_urls)]
                        warm_s = await fire(bot, warm)
                        warm_lag = monitor.stats()
                        counts.clear()
                        rng = random.Random(options.seed)
                        queries = [urls[i % len(urls)] for i in range(options.commands)]
                        rng.shuffle(queries)
                        interactions = [mood_track(bot, query, 1_000 + i)
                                        for i, query in enumerate(queries)]
                        start = monitor.mark()
                        wall_s = await fire(bot, interactions)
                        await asyncio.sleep(0.05)  # a few ticks after the last answer
                        lag = monitor.stats(start)
                        worst = monitor.worst(start)
                        collections = monitor.gc_pauses(start)
                        late = monitor.late_ticks(start)
                    stored = await predictions_per_track(service, "url")
                    out["tracked_after"] = len(gc.get_objects())  # frozen ones not counted
            finally:
                gc.unfreeze()  # this process goes on (the mpd run, a test session)
                if restore is not None:
                    restore()
        out["load_after"] = load_average()

    wanted = {url_identity(url) for url in urls}
    errors = Counter(i.error_text for i in interactions if not i.answered_with_track)
    deferred = [d * 1000 for i in interactions if (d := i.delay(("defer",))) is not None]
    replied = [d * 1000 for i in interactions
               if (d := i.delay(("followup", "message"))) is not None]
    out.update({
        "commands": options.commands, "tracks": options.tracks,
        "clip_seconds": options.seconds, "warm_commands": len(warm),
        "warm_s": round(warm_s, 3), "warm_ok": sum(i.answered_with_track for i in warm),
        "warm_lag": asdict(warm_lag),
        "wall_s": round(wall_s, 3),
        "answered": len(replied), "ok": sum(i.answered_with_track for i in interactions),
        "errors": dict(errors), "deferred": len(deferred),
        "deferral_ms": percentiles(deferred), "reply_ms": percentiles(replied),
        "classifications": sum(counts[k] for k in wanted),
        "classified_tracks": sum(1 for k in wanted if counts[k]),
        "classified_twice": sorted(k for k in wanted if counts[k] > 1),
        "other_classifications": sum(n for k, n in counts.items() if k not in wanted),
        "stored_tracks": sum(1 for k in wanted if k in stored),
        "missing_tracks": sorted(k for k in wanted if k not in stored),
        "tracks_without_one_prediction": sorted(k for k in wanted if stored.get(k, 1) != 1),
        "lag": asdict(lag), "lag_met": lag.met, "gc": collections, "late": late,
        "worst_ticks": [{"at_s": round(a, 3), "late_ms": round(m, 1)} for a, m in worst],
        "stalls": stall_summary(monitor.stalls),
    })
    out["correct"] = (out["ok"] == options.commands and out["deferred"] == options.commands
                      and not out["classified_twice"] and not out["missing_tracks"]
                      and not out["tracks_without_one_prediction"]
                      and out["classified_tracks"] == len(wanted))
    return out


def print_discord(result: dict[str, Any]) -> None:
    """The Discord figures, readable."""
    print(f"discord: {result['commands']} concurrent /mood track over {result['tracks']} "
          f"tracks ({result['clip_seconds']:.0f} s MP3 over HTTP), {result['workers']} "
          f"classification worker(s), models {', '.join(result['models'].values())}")
    print(f"  bot built as `mer bot run` builds it: {result['frozen_objects']:,} start-up "
          "objects frozen" if result["frozen_objects"] else
          "  bot as before the lag fixes (--before: no freeze_heap, charts in parallel "
          "threads)")
    print(f"  warm-up (not measured): {result['warm_commands']} commands in "
          f"{result['warm_s']:.1f} s, {result['warm_ok']} answered; loop lag max "
          f"{result['warm_lag']['max_ms']:.0f} ms")
    print(f"  answered {result['answered']}/{result['commands']}, with a track "
          f"{result['ok']}, errors {sum(result['errors'].values())} "
          f"{result['errors'] or ''}".rstrip())
    print(f"  classifications {result['classifications']} for {result['classified_tracks']} "
          f"distinct tracks; classified twice: {len(result['classified_twice'])}")
    print(f"  database: {result['stored_tracks']} of {result['tracks']} tracks stored, "
          f"{len(result['tracks_without_one_prediction'])} without exactly one prediction "
          f"for the live models")
    print(f"  deferral  {_ms_line(result['deferral_ms'])}")
    print(f"  reply     {_ms_line(result['reply_ms'])}  (wall {result['wall_s']:.1f} s)")
    _print_lag(result)


def _print_lag(result: dict[str, Any]) -> None:
    """The loop-lag line, the stalls, and the load average of a run's result."""
    lag = result["lag"]
    print(f"  loop lag  p50 {lag['p50_ms']:.1f} ms  p95 {lag['p95_ms']:.1f} ms  "
          f"max {lag['max_ms']:.1f} ms  over {lag['threshold_ms']:.0f} ms: {lag['over']} of "
          f"{lag['samples']} ticks -> target {'met' if result['lag_met'] else 'MISSED'}")
    _print_stalls(result)
    print(f"  load average before {result['load_before']}, after {result['load_after']}; "
          f"correct: {result['correct']}")


def _ms_line(ms: dict[str, float]) -> str:
    return (f"p50 {_ms(ms['p50'])}  p95 {_ms(ms['p95'])}  p99 {_ms(ms['p99'])}  "
            f"max {_ms(ms['max'])}")


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _print_stalls(result: dict[str, Any]) -> None:
    if result["worst_ticks"]:
        ticks = ", ".join(f"{w['late_ms']:.0f} ms at {w['at_s']:.1f} s"
                          for w in result["worst_ticks"])
        print(f"  latest ticks: {ticks}")
    late = result["late"]
    if late["count"]:
        print(f"  ticks over {TARGET_MS:.0f} ms: {late['count']}, {late['late_ms']:.0f} ms late in "
              f"all, of which the loop thread waited {late['cpu_wait_ms']:.0f} ms for a CPU")
    pauses = result["gc"]
    print(f"  garbage collections {pauses['count']}, longest {pauses['max_ms']:.0f} ms, "
          f"{pauses['over']} over {TARGET_MS:.0f} ms")
    for stall in result["stalls"]:
        print(f"  stalled {stall['count']}x (up to {stall['late_ms_max']:.0f} ms seen) in:")
        for frame in stall["stack"]:
            print(f"      {frame}")
    for line in result.get("slow_callbacks", [])[:10]:
        print(f"  asyncio debug: {line}")


# --- mpd: a burst of queue changes under the listener ---------------------------------------


@dataclass
class Burst:
    """What the second client did, and the queue it left.

    Attributes
    ----------
    ops : list of str
        The commands, in order (``add load/003.flac``, ``delete 2``, ...).
    seconds : float
        From the first command sent to the last one answered.
    current : str or None
        The URI of MPD's current song after the burst.
    queue : list of str
        The URIs queued after the current one (the whole queue without a current song).
    """

    ops: list[str] = field(default_factory=list)
    seconds: float = 0.0
    current: str | None = None
    queue: list[str] = field(default_factory=list)


def burst(client: Any, uris: Sequence[str], changes: int, seed: int = 0,
          gap_s: float = 0.0) -> Burst:
    """Send ``changes`` queue changes through a synchronous MPD client, back to back or
    ``gap_s`` apart.

    Adds (at the end, or inserted), deletes, moves, two ``play`` (one early, one late) and,
    with 10 changes or more, one ``clear`` at 40 %. Positions are drawn from a seeded
    generator against the queue's length, which is tracked here.
    """
    rng = random.Random(seed)
    done = Burst()
    length = len(client.playlistinfo())
    plays = {max(1, changes // 5), max(1, (4 * changes) // 5)} if changes >= 3 else set()
    clear_at = (4 * changes) // 10 if changes >= 10 else -1
    start = time.perf_counter()
    for i in range(changes):
        roll = rng.random()
        if i == clear_at:
            client.clear()
            done.ops.append("clear")
            length = 0
        elif i in plays and length:
            position = rng.randrange(length)
            client.play(position)
            done.ops.append(f"play {position}")
        elif length and roll < 0.18:
            position = rng.randrange(length)
            client.delete(position)
            done.ops.append(f"delete {position}")
            length -= 1
        elif length > 1 and roll < 0.36:
            source, target = rng.randrange(length), rng.randrange(length)
            client.move(source, target)
            done.ops.append(f"move {source} {target}")
        elif length and roll < 0.5:
            uri, position = rng.choice(uris), rng.randrange(length + 1)
            client.addid(uri, position)
            done.ops.append(f"addid {uri} {position}")
            length += 1
        else:
            uri = rng.choice(uris)
            client.add(uri)
            done.ops.append(f"add {uri}")
            length += 1
        if gap_s and i < changes - 1:
            time.sleep(gap_s)
    done.seconds = time.perf_counter() - start
    status = client.status()
    songs = client.playlistinfo()
    if "song" in status:
        current = int(status["song"])
        done.current = str(songs[current]["file"])
        done.queue = [str(s["file"]) for s in songs[current + 1:]]
    else:
        done.queue = [str(s["file"]) for s in songs]
    return done


class _Events:
    """The listener's reporter: every event, with when it came (``perf_counter``)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, ListenEvent]] = []

    def __call__(self, event: ListenEvent) -> None:
        self.seen.append((time.perf_counter(), event))

    def kinds(self) -> Counter[str]:
        return Counter(event.kind for _, event in self.seen)

    def uris(self, *kinds: str) -> set[str]:
        return {e.track.uri for _, e in self.seen if e.kind in kinds and e.track is not None}

    def problems(self) -> list[str]:
        return [e.message for _, e in self.seen if e.kind == "problem"]


@dataclass
class MpdOptions:
    """What :func:`run_mpd` measures (see the module's description)."""

    changes: int = 50
    tracks: int = 40
    workers: int = 1
    mode: str = "annotate"
    ahead: int | None = None
    models: Path | None = None
    n_windows: int | None = None
    seed: int = 0
    stacks: bool = False
    settle_timeout_s: float = 600.0
    gap_s: float = 0.0
    freeze: bool = False


async def run_mpd(options: MpdOptions) -> dict[str, Any]:
    """Start MPD and the listener, fire the burst, wait until the listener caught up.

    Returns
    -------
    dict
        The burst, the time to settle, events, classifications, lag figures (see
        :func:`print_mpd`).
    """
    from bot.player.mpd import MpdPlayer
    from bot.service import MoodService
    from bot.service.heap import freeze_long_lived
    from bot.service.listening import ListenConfig, mood_stickers
    from tests.fakes.mpd import LibraryTrack, MpdDaemon

    if options.mode not in ("annotate", "suggest"):
        raise ValueError("--mode: annotate or suggest")
    ahead = options.ahead if options.ahead is not None else options.changes + 10
    library = tuple(LibraryTrack(f"load/{i:03d}.flac", f"Load Artist {i % 10:02d}",
                                 f"Load Track {i:03d}", f"Q{i % 4 + 1}", seconds=60.0)
                    for i in range(options.tracks))
    out: dict[str, Any] = {"load_before": load_average(), "mode": options.mode,
                           "ahead": ahead, "changes": options.changes,
                           "tracks": options.tracks, "gap_ms": options.gap_s * 1000,
                           "frozen_objects": 0}
    daemon = await asyncio.to_thread(MpdDaemon, library)
    try:
        await daemon.astart()
        with tempfile.TemporaryDirectory(prefix="mer-load-") as tmp:
            folder = Path(tmp)
            warm_paths = await asyncio.to_thread(
                write_clips, folder / "warm",
                [f"warm{i}.mp3" for i in range(2 * options.workers
                                               if options.workers > 1 else 1)], 8.0)
            settings = _settings(folder / "data", workers=options.workers,
                                 models=options.models, n_windows=options.n_windows)
            service = await MoodService.create(settings, allow_local_files=True,
                                               workers=options.workers)
            player = MpdPlayer(daemon.player_settings(), backoff_s=(0.05,),
                               keepalive_s=None)
            async with service, player:
                counts = count_classifications(service)
                warm_start = time.perf_counter()
                await asyncio.gather(*(service.classify(str(p)) for p in warm_paths))
                out["warm_s"] = round(time.perf_counter() - warm_start, 3)
                counts.clear()
                out.update({"workers": service.workers, "models": service.versions})
                if options.freeze:  # as MoodBot(freeze_heap=True); `mer listen` does not
                    out["frozen_objects"] = freeze_long_lived()

                async def stickers(track: QueuedTrack, mood: TrackMood) -> None:
                    await player.set_stickers(track.uri, mood_stickers(mood))

                events = _Events()
                listener = TimedListener(
                    player, service, ListenConfig(mode=options.mode,  # type: ignore[arg-type]
                                                  ahead=ahead),
                    report=events, annotate=stickers if options.mode == "annotate" else None)
                async with LagMonitor(sample_stacks=options.stacks) as monitor:
                    task = asyncio.create_task(listener.run(), name="listener")
                    await _until(lambda: bool(listener.steps) and not listener.busy, 30.0)
                    start = monitor.mark()
                    began = time.perf_counter()

                    def send() -> Burst:
                        with daemon.client() as client:
                            return burst(client, daemon.uris, options.changes, options.seed,
                                         options.gap_s)

                    done = await asyncio.to_thread(send)
                    ended = began + done.seconds
                    wanted = ([done.current] if done.current else []) + done.queue[:ahead]
                    handled_kinds = (("annotated", "problem") if options.mode == "annotate"
                                     else ("classified", "problem"))

                    def settled() -> bool:
                        return (not listener.busy and set(wanted) <= events.uris(*handled_kinds)
                                and _current_seen(events, done.current, options.mode))

                    timed_out = not await _until(settled, options.settle_timeout_s,
                                                 raise_error=False)
                    settled_at = time.perf_counter()
                    await asyncio.sleep(0.05)
                    lag = monitor.stats(start)
                    worst = monitor.worst(start)
                    collections = monitor.gc_pauses(start)
                    late = monitor.late_ticks(start)
                    crashed = task.done()
                    crash = (repr(task.exception()) if crashed and not task.cancelled()
                             and task.exception() is not None else None)
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                stored = await predictions_per_track(service, "local")
        out["load_after"] = load_average()
    finally:
        gc.unfreeze()
        await asyncio.to_thread(daemon.close)

    classified_paths = {str(Path(p)) for p in counts}
    out.update({
        "burst_ops": done.ops, "burst_ops_count": Counter(op.split()[0] for op in done.ops),
        "burst_s": round(done.seconds, 3),
        "final_queue": len(wanted), "final_current": done.current,
        "settle_s": round(settled_at - ended, 3), "timed_out": timed_out,
        "total_s": round(settled_at - began, 3),
        "steps": sum(1 for s in listener.steps if s[0] >= began),
        "step_ms": percentiles([(e - s) * 1000 for s, e in listener.steps if s >= began]),
        "events": dict(events.kinds()),
        "problems": events.problems(),
        "unhandled": sorted(set(wanted) - events.uris(*handled_kinds)),
        "classifications": sum(counts.values()),
        "classified_twice": sorted(k for k, n in counts.items() if n > 1),
        "stored_without_one_prediction": sorted(k for k, n in stored.items()
                                                if n != 1 and k in classified_paths),
        "crashed": crashed, "crash": crash,
        "lag": asdict(lag), "lag_met": lag.met, "gc": collections, "late": late,
        "worst_ticks": [{"at_s": round(a, 3), "late_ms": round(m, 1)} for a, m in worst],
        "stalls": stall_summary(monitor.stalls),
    })
    out["correct"] = (not timed_out and not crashed and not out["unhandled"]
                      and not out["classified_twice"]
                      and not out["stored_without_one_prediction"])
    return out


class TimedListener(Listener):
    """The listener, recording when each step (one look at the player and what follows) ran.

    Attributes
    ----------
    steps : list of tuple of float
        (start, end) of each finished step (``perf_counter``).
    busy : int
        Steps running now (0 or 1: :meth:`Listener.run` awaits each).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps: list[tuple[float, float]] = []
        self.busy = 0

    async def step(self, changes: frozenset[str] = frozenset()) -> None:
        """:meth:`Listener.step`, timed."""
        self.busy += 1
        started = time.perf_counter()
        try:
            await super().step(changes)
        finally:
            self.busy -= 1
            self.steps.append((started, time.perf_counter()))


def _current_seen(events: _Events, current: str | None, mode: str) -> bool:
    """In ``suggest`` mode the final current track must have been reported as playing."""
    if mode != "suggest" or current is None:
        return True
    return current in events.uris("playing")


async def _until(check: Callable[[], bool], timeout_s: float, *,
                 raise_error: bool = True) -> bool:
    deadline = time.perf_counter() + timeout_s
    while not check():
        if time.perf_counter() > deadline:
            if raise_error:
                raise TimeoutError(f"not settled within {timeout_s} s")
            return False
        await asyncio.sleep(0.01)
    return True


def print_mpd(result: dict[str, Any]) -> None:
    """The MPD figures, readable."""
    ops = ", ".join(f"{n} {op}" for op, n in sorted(result["burst_ops_count"].items()))
    print(f"mpd: listener ({result['mode']}, {result['ahead']} ahead) on a throwaway MPD, "
          f"{result['tracks']} tracks, {result['workers']} classification worker(s), models "
          f"{', '.join(result['models'].values())}; warm-up {result['warm_s']:.1f} s "
          "(not measured)")
    if result["frozen_objects"]:
        print(f"  --freeze: {result['frozen_objects']:,} start-up objects frozen (as the bot "
              "does; `mer listen` does not)")
    gap = f", {result['gap_ms']:.0f} ms apart" if result["gap_ms"] else ""
    print(f"  burst: {result['changes']} changes{gap} in {result['burst_s'] * 1000:.0f} ms "
          f"({ops}); "
          f"final queue {result['final_queue']} tracks")
    print(f"  settled {result['settle_s']:.2f} s after the burst"
          + (" (TIMED OUT)" if result["timed_out"] else "")
          + f"; {result['steps']} listener steps, step p50 {_ms(result['step_ms']['p50'])} "
          f"max {_ms(result['step_ms']['max'])}")
    print(f"  classifications {result['classifications']}, classified twice "
          f"{len(result['classified_twice'])}; unhandled queued tracks "
          f"{len(result['unhandled'])}; events {result['events']}")
    print(f"  problems {len(result['problems'])}; crashed: {result['crashed']}"
          + (f" ({result['crash']})" if result["crash"] else ""))
    _print_lag(result)


# --- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("what", choices=("discord", "mpd", "all"))
    parser.add_argument("--commands", type=int, default=200, help="discord: commands")
    parser.add_argument("--tracks", type=int, default=40, help="distinct tracks")
    parser.add_argument("--workers", type=int, default=None,
                        help="classification processes (default: discord as the bot, one "
                             "per core; mpd as `mer listen`, 1 = a thread)")
    parser.add_argument("--changes", type=int, default=50, help="mpd: queue changes")
    parser.add_argument("--mode", choices=("annotate", "suggest"), default="annotate",
                        help="mpd: the listener's mode")
    parser.add_argument("--models", type=Path, default=None,
                        help="models folder (default: the shipped models)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="discord: length of each clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stacks", action="store_true",
                        help="sample the loop thread's stack whenever it is late past 50 ms")
    parser.add_argument("--debug", action="store_true",
                        help="asyncio debug mode; collect its slow-callback warnings")
    parser.add_argument("--before", action="store_true",
                        help="discord: as the bot was before the lag fixes (no freeze_heap, "
                             "charts drawn in parallel threads, no collection after each)")
    parser.add_argument("--gap-ms", type=float, default=0.0,
                        help="mpd: wait this long between changes (default: back to back)")
    parser.add_argument("--freeze", action="store_true",
                        help="mpd: freeze the start-up heap as the bot does (`mer listen` "
                             "does not)")
    parser.add_argument("--json", action="store_true", help="print JSON, not a summary")
    return parser


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    slow = SlowCallbacks()
    if args.debug:
        asyncio.get_running_loop().slow_callback_duration = TARGET_MS / 1000
        logging.getLogger("asyncio").addHandler(slow)
    results: dict[str, Any] = {}
    if args.what in ("discord", "all"):
        results["discord"] = await run_discord(DiscordOptions(
            commands=args.commands, tracks=args.tracks, workers=args.workers,
            models=args.models, seconds=args.seconds, seed=args.seed, stacks=args.stacks,
            before=args.before))
        results["discord"]["slow_callbacks"] = list(slow.seen)
        slow.seen.clear()
    if args.what in ("mpd", "all"):
        results["mpd"] = await run_mpd(MpdOptions(
            changes=args.changes, tracks=args.tracks,
            workers=args.workers if args.workers is not None else 1, mode=args.mode,
            models=args.models, seed=args.seed, stacks=args.stacks,
            gap_s=args.gap_ms / 1000, freeze=args.freeze))
        results["mpd"]["slow_callbacks"] = list(slow.seen)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks; 0 when every correctness check held."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    results = asyncio.run(_main(args), debug=args.debug)
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                          "argv": ["bench/load.py", *(argv if argv is not None
                                                      else sys.argv[1:])]}
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        if "discord" in results:
            print_discord(results["discord"])
        if "mpd" in results:
            print_mpd(results["mpd"])
    return 0 if all(r["correct"] for k, r in results.items() if k != "machine") else 1


if __name__ == "__main__":
    raise SystemExit(main())
