"""Fault suites: each source failing every way, a locked database, a full disk, a worker killed
mid-classification and a model file changed on disk.

The source matrix runs against real servers on 127.0.0.1 (:mod:`tests.fakes.servers`): for
Deezer, iTunes, Spotify (metadata), plain URL downloads and yt-dlp, a 429 with
``Retry-After``, a 5xx, a timeout, a slow body, a truncated body, an oversized body and a
redirect to a private address. Each case asserts the source's own error (type and words) and
what the resolver does next: the next source serves the track, or, for a URL, the reasons are
listed (yt-dlp is not sent to a server that is down). Cases already covered elsewhere are left
out here and listed in docs/RELIABILITY.md with the test that covers them.

The rest runs the real service: SQLite locked by another connection, ENOSPC while the audio
cache writes, ``kill -9`` of the pool worker that is classifying, and an artifact whose bytes
changed after the models were loaded. Retraining that crashes or produces a worse model, and a
retrained artifact whose sha256 does not match its card, are in tests/test_models_admin.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import soundfile as sf
from pydantic import SecretStr
from sqlalchemy import func, select

from bot.service import MoodService, ServiceError
from bot.service.history import History
from bot.settings import Settings, SourceSettings
from bot.sources import audio_cache
from bot.sources.audio_cache import AudioCache
from bot.sources.base import Fetched, Wanted
from bot.sources.errors import (
    AudioCacheError,
    DownloadTooLargeError,
    NoPreviewError,
    NotAudioError,
    RateLimitedError,
    SourceError,
    SourceUnavailableError,
    UnsafeURLError,
)
from bot.sources.models import Provider, TrackInfo
from bot.sources.resolver import PreviewResolver, ResolverConfig
from bot.sources.ytdlp import YtDlpSource
from bot.storage.engine import create_engine, make_sessionmaker
from bot.storage.errors import StorageError
from bot.storage.migrate import upgrade
from bot.storage.models import Feedback, Prediction, RetrainJob, Track, TrackEvent
from bot.storage.store import PredictionRecord, Store, TrackRecord
from mer_models.engine import DEFAULT_MODELS_DIR, MoodEngine
from mer_models.errors import ModelCardError
from tests.fakes.audio import tone_mp3
from tests.fakes.guards import LoopbackGuard, install_loopback_guard
from tests.fakes.servers import (
    BodyFaults,
    FakeDeezer,
    FakeFiles,
    FakeItunes,
    FakeService,
    FakeSpotify,
)
from tests.synth import SR, mood_clip

QUERY = "The Oscillators - Sunny Sine"
TIMEOUT_S = 0.4
CAP_BYTES = 100_000  # max_download_mb=0.1; the previews are about 12 kB


@pytest.fixture(autouse=True)
def guard(monkeypatch: pytest.MonkeyPatch) -> LoopbackGuard:
    return install_loopback_guard(monkeypatch)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the source fault matrix -----------------------------------------------------------------


class StubYtDlp:
    """yt-dlp where a case does not exercise it (a real one would search YouTube)."""

    name = "ytdlp"

    def __init__(self) -> None:
        self.calls: list[Wanted] = []
        self.audio = tone_mp3(1.0, 550.0)

    async def fetch(self, wanted: Wanted) -> Fetched:
        self.calls.append(wanted)
        return Fetched(TrackInfo(title="from youtube", artist="someone", provider="ytdlp",
                                 provider_id="yt1"), self.audio, "mp3")


class PinnedYtDlp(YtDlpSource):
    """The real yt-dlp (child process, guarded proxy), sent to one loopback URL whatever the
    track: a search would go to YouTube."""

    def __init__(self, target: str) -> None:
        super().__init__(max_bytes=CAP_BYTES, timeout_s=TIMEOUT_S, deadline_s=15.0,
                         allowed_networks=["127.0.0.1/32"])
        self.target = target

    async def fetch(self, wanted: Wanted) -> Fetched:
        return await super().fetch(Wanted(url=self.target))


@dataclass
class World:
    spotify: FakeSpotify
    deezer: FakeDeezer
    itunes: FakeItunes
    files: FakeFiles
    private: FakeFiles  # on 127.0.0.2, outside the allowed network: must get no request
    bodies: dict[str, BodyFaults]
    cache_dir: Path
    stub: StubYtDlp

    def server(self, source: str) -> FakeService:
        return {"deezer": self.deezer, "itunes": self.itunes, "spotify": self.spotify,
                "url": self.files, "ytdlp": self.files}[source]

    def resolver(self, *, order: tuple[str, ...] = ("deezer", "itunes", "ytdlp"),
                 spotify: bool = False, ytdlp: Any = None) -> PreviewResolver:
        extra: dict[str, Any] = {}
        if spotify:
            extra = dict(spotify_client_id=FakeSpotify.CLIENT_ID,
                         spotify_client_secret=SecretStr(FakeSpotify.CLIENT_SECRET),
                         spotify_api_base=self.spotify.api_base,
                         spotify_token_url=self.spotify.token_url)
        settings = SourceSettings(  # type: ignore[call-arg]
            _env_file=None, deezer_api_base=self.deezer.base, itunes_api_base=self.itunes.base,
            allow_private_urls=False, allowed_networks=["127.0.0.1/32"],
            http_timeout_s=TIMEOUT_S, http_retries=1, backoff_base_s=0.01,
            max_retry_after_s=5.0, deezer_quota_wait_s=0.01,
            max_download_mb=CAP_BYTES / 1e6, source_order=[Provider(n) for n in order],
            **extra)
        return PreviewResolver(ResolverConfig(settings, self.cache_dir),
                               sources={"ytdlp": ytdlp or self.stub})


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    fakes = (FakeSpotify(), FakeDeezer(), FakeItunes(), FakeFiles())
    bodies = {name: BodyFaults(fake) for name, fake in
              zip(("spotify", "deezer", "itunes", "url"), fakes, strict=True)}
    bodies["ytdlp"] = bodies["url"]
    spotify, deezer, itunes, files = fakes
    async with spotify, deezer, itunes, files, FakeFiles(host="127.0.0.2") as private:
        yield World(spotify, deezer, itunes, files, private, bodies, tmp_path / "cache",
                    StubYtDlp())


@dataclass(frozen=True)
class Fault:
    """One cell of the matrix: break ``path`` of ``source``'s server as ``kind``; the source
    must raise ``error`` matching ``match``; then ``then`` serves the track (a source name),
    or, for a URL, ``"reasons"`` (NoPreviewError, yt-dlp not asked) or ``"refused"``
    (UnsafeURLError, nothing else asked)."""

    source: str
    kind: str
    path: str
    error: type[SourceError]
    match: str
    then: str

    @property
    def id(self) -> str:
        return f"{self.source}-{self.kind}"


def _cells(source: str, then: str, api: str, media: str,
           skip: tuple[str, ...] = ()) -> list[Fault]:
    retried = "after 2 tries|still refusing after 2 tries"
    cells = [
        Fault(source, "429", api, RateLimitedError, rf"HTTP 429 .*({retried})", then),
        Fault(source, "5xx", media, SourceUnavailableError, rf"HTTP 503 .*({retried})", then),
        Fault(source, "timeout", api, SourceUnavailableError,
              rf"no answer from .* within {TIMEOUT_S:g} s", then),
        Fault(source, "slow-body", media, SourceUnavailableError,
              rf"no answer from .* within {TIMEOUT_S:g} s", then),
        Fault(source, "truncated", media, NotAudioError, r"ended early: got \d+ of \d+ bytes",
              then),
        Fault(source, "oversized", media, DownloadTooLargeError,
              f"sent more than the {CAP_BYTES} bytes allowed", then),
        Fault(source, "private-redirect", media, UnsafeURLError,
              r"127\.0\.0\.2 .*non-public address", then),
    ]
    return [c for c in cells if c.kind not in skip]


MATRIX = [
    *_cells("deezer", "itunes", "/search", "/preview/"),
    *_cells("itunes", "deezer", "/search", "/preview/"),
    # Spotify is asked for metadata only: every failure falls back to Deezer's metadata.
    # (5xx: tests/test_sources_resolver.py::test_spotify_search_down_falls_back_...)
    Fault("spotify", "429", "/v1/search", RateLimitedError,
          "search: HTTP 429; still refusing after 2 tries", "deezer"),
    Fault("spotify", "timeout", "/v1/search", SourceUnavailableError, "search: timed out",
          "deezer"),
    Fault("spotify", "slow-body", "/v1/search", SourceUnavailableError, "search: timed out",
          "deezer"),
    Fault("spotify", "truncated", "/v1/search", SourceUnavailableError,
          r"search: the answer ended early \(connection dropped\)", "deezer"),
    Fault("spotify", "oversized", "/v1/search", SourceError,
          "search: the answer is larger than 4194304 bytes", "deezer"),
    Fault("spotify", "private-redirect", "/v1/search", SourceError,
          "search: the API answered with a redirect, which is not followed", "deezer"),
    # A URL: a server that is down or refusing is not asked again through yt-dlp; content it
    # could not use (cut short, too large) is. (timeout: test_sources_resolver.py::
    # test_a_server_that_is_down_or_too_slow_is_not_asked_again_by_ytdlp)
    *[Fault("url", c.kind, "/audio.mp3", c.error, c.match,
            {"truncated": "ytdlp", "oversized": "ytdlp",
             "private-redirect": "refused"}.get(c.kind, "reasons"))
      for c in _cells("url", "", "", "", skip=("timeout",))],
    # The real yt-dlp, then iTunes. (slow body, oversized, private redirect:
    # tests/test_sources_egress.py, dripping / ytdlp_cuts / redirect)
    Fault("ytdlp", "429", "/audio.mp3", RateLimitedError, "HTTP Error 429: Too Many Requests",
          "itunes"),
    Fault("ytdlp", "5xx", "/audio.mp3", SourceUnavailableError,
          "HTTP Error 503: Service Unavailable", "itunes"),
    Fault("ytdlp", "timeout", "/audio.mp3", SourceUnavailableError, "Read timed out",
          "itunes"),
]

_BODY_KINDS = {"slow-body": "drip", "truncated": "truncated", "oversized": "oversized"}


def _inject(world: World, fault: Fault) -> None:
    server = world.server(fault.source)
    if fault.kind == "429":
        server.fail(fault.path, 429, times=None, headers={"Retry-After": "0.2"})
    elif fault.kind == "5xx":
        server.fail(fault.path, 503, times=None)
    elif fault.kind == "timeout":
        server.fail(fault.path, 200, times=None, delay_s=TIMEOUT_S + 0.4, body={})
    elif fault.kind == "private-redirect":
        server.fail(fault.path, 302, times=None,
                    headers={"Location": f"{world.private.base}/audio.mp3"})
    else:
        world.bodies[fault.source].set(fault.path, _BODY_KINDS[fault.kind])


def _direct(world: World, resolver: PreviewResolver, fault: Fault,
            ytdlp: YtDlpSource | None) -> Awaitable[object]:
    """The failing source, called on its own."""
    if fault.source == "deezer":
        return resolver.deezer.fetch(Wanted(text=QUERY))
    if fault.source == "itunes":
        return resolver.itunes.fetch(Wanted(text=QUERY))
    if fault.source == "spotify":
        assert resolver.spotify is not None
        return resolver.spotify.search_tracks(QUERY)
    if fault.source == "url":
        return resolver.http.download(f"{world.files.base}/audio.mp3", max_bytes=CAP_BYTES)
    assert ytdlp is not None
    return ytdlp.fetch(Wanted(text=QUERY))


@pytest.mark.parametrize("fault", MATRIX, ids=[f.id for f in MATRIX])
async def test_a_failing_source_says_why_and_the_next_one_serves(
        world: World, guard: LoopbackGuard, fault: Fault) -> None:
    _inject(world, fault)
    ytdlp = PinnedYtDlp(f"{world.files.base}/audio.mp3") if fault.source == "ytdlp" else None
    order = {"itunes": ("itunes", "deezer"), "ytdlp": ("ytdlp", "itunes")}.get(
        fault.source, ("deezer", "itunes", "ytdlp"))
    server = world.server(fault.source)
    async with world.resolver(order=order, spotify=fault.source == "spotify",
                              ytdlp=ytdlp) as resolver:
        start = time.monotonic()
        with pytest.raises(fault.error, match=fault.match) as info:
            await _direct(world, resolver, fault, ytdlp)
        assert type(info.value) is fault.error
        assert info.value.source == fault.source.replace("url", "http")
        if fault.kind == "429" and fault.source != "ytdlp":  # Retry-After honoured, once
            assert server.hits_under(fault.path) == 2
            assert time.monotonic() - start >= 0.2
        query = f"{world.files.base}/audio.mp3" if fault.source == "url" else QUERY
        if fault.then == "refused":
            with pytest.raises(UnsafeURLError):
                await resolver.resolve(query)
        elif fault.then == "reasons":
            with pytest.raises(NoPreviewError) as failed:
                await resolver.resolve(query)
            assert failed.value.reasons == {"http": info.value.reason}
        else:
            preview = await resolver.resolve(query)
            assert preview.provider == fault.then
            served = {"deezer": world.deezer.audio, "itunes": world.itunes.audio,
                      "ytdlp": world.stub.audio}[fault.then]
            assert preview.sha256 == sha(served) == sha(preview.path.read_bytes())
            if fault.source == "spotify":
                assert preview.track.provider == "deezer"  # Deezer's metadata instead
    # For a URL that is down or refusing, yt-dlp is not asked: it would wait on it again.
    assert bool(world.stub.calls) == (fault.then == "ytdlp")
    assert sum(world.private.hits.values()) == 0 and "127.0.0.2" not in guard.attempts
    leftovers = [p for p in world.cache_dir.rglob("*") if p.is_file() and p.name[0] == "."]
    assert leftovers == []


@pytest.mark.xfail(strict=True, reason="open (docs/RELIABILITY.md): yt-dlp keeps what arrived "
                                       "of a body cut short and calls it the track")
async def test_ytdlp_refuses_a_truncated_body(world: World) -> None:
    world.bodies["ytdlp"].set("/audio.mp3", "truncated")
    with pytest.raises(SourceError):
        await PinnedYtDlp(f"{world.files.base}/audio.mp3").fetch(Wanted(text=QUERY))


# --- the service on real models ----------------------------------------------------------------


@pytest.fixture(scope="module")
def cldnn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped CLDNN alone (a real model that loads in a second)."""
    folder = tmp_path_factory.mktemp("cldnn")
    for path in DEFAULT_MODELS_DIR.glob("mood-4q-cldnn-*"):
        shutil.copy(path, folder)
    return folder


def _settings(tmp: Path, models: Path, *, workers: int = 1, busy_ms: int = 30_000,
              deezer: str | None = None, n_windows: int = 3) -> Settings:
    sources: dict[str, object] = {"source_order": ["deezer"], "allow_private_urls": True,
                                  "http_retries": 0}
    if deezer is not None:
        sources["deezer_api_base"] = deezer
    return Settings.load(None, data_dir=tmp, sources=sources,
                         engine={"models_dir": models, "workers": workers,
                                 "n_windows": n_windows},
                         storage={"auto_upgrade": True, "sqlite_busy_timeout_ms": busy_ms})


def _clip(folder: Path, name: str, seconds: float = 6.0, seed: int = 1) -> Path:
    path = folder / name
    sf.write(path, mood_clip("Q1", seconds, seed=seed), SR)
    return path


async def _count(service: MoodService, model: type) -> int:
    async with service.store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- database locked ----------------------------------------------------------------------------


class WriteLock:
    """Another program's write transaction on the SQLite file (``BEGIN IMMEDIATE``)."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, timeout=0, check_same_thread=False,
                                          isolation_level=None)
        self.connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.connection.execute("ROLLBACK")
        self.connection.close()


def _records(path: Path) -> tuple[TrackRecord, PredictionRecord]:
    track = TrackRecord(title="locked", provider="local", provider_id=str(path),
                        fingerprint="1:1")
    prediction = PredictionRecord(
        models={"cldnn": "mood-4q-cldnn-1"}, weights={"cldnn": 1.0},
        probabilities={"Q1": 0.7, "Q2": 0.1, "Q3": 0.1, "Q4": 0.1},
        quadrant="Q1", valence=0.6, arousal=0.6, confidence=0.7, timeline=[])
    return track, prediction


@contextlib.asynccontextmanager
async def _store(path: Path, busy_ms: int) -> AsyncIterator[Store]:
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    engine = create_engine(url, busy_timeout_ms=busy_ms)
    try:
        yield Store(make_sessionmaker(engine))
    finally:
        await engine.dispose()


async def _rows(store: Store, model: type) -> int:
    async with store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_write_lock_past_the_busy_timeout_is_one_clear_error_and_stores_nothing(
        tmp_path: Path) -> None:
    async with _store(tmp_path / "mood.db", busy_ms=300) as store:
        lock = WriteLock(tmp_path / "mood.db")
        start = time.monotonic()
        try:
            with pytest.raises(StorageError) as info:
                await store.record_analysis(*_records(tmp_path / "a.wav"))
        finally:
            lock.release()
        assert 0.25 <= time.monotonic() - start < 5.0  # waited the busy timeout, no longer
        message = str(info.value)
        assert "\n" not in message and message.endswith(
            "could not store the analysis (database is locked: another program held its "
            "write lock past the busy timeout); nothing was stored")
        assert await _rows(store, Track) == 0 and await _rows(store, Prediction) == 0
        stored = await store.record_analysis(*_records(tmp_path / "a.wav"))
        assert stored.prediction is not None and await _rows(store, Prediction) == 1


async def test_a_short_write_lock_is_waited_out(tmp_path: Path) -> None:
    async with _store(tmp_path / "mood.db", busy_ms=5_000) as store:
        lock = WriteLock(tmp_path / "mood.db")
        threading.Timer(0.5, lock.release).start()
        start = time.monotonic()
        stored = await store.record_analysis(*_records(tmp_path / "a.wav"))
        assert time.monotonic() - start >= 0.45  # it waited for the lock...
        assert stored.prediction is not None and await _rows(store, Prediction) == 1  # ...and wrote


async def test_every_other_write_says_a_lock_in_one_line_and_stores_nothing(
        tmp_path: Path) -> None:
    """Feedback, history, the model registry and retraining jobs: one StorageError naming
    what was written and why, never SQLAlchemy's multi-line OperationalError."""
    async with _store(tmp_path / "mood.db", busy_ms=200) as store:
        stored = await store.record_analysis(*_records(tmp_path / "a.wav"))
        track_id = stored.track.id
        writes: dict[str, Callable[[], Awaitable[Any]]] = {
            f"feedback on track {track_id}":
                lambda: store.set_feedback("cli", "me", track_id, "Q2"),
            "history of cli": lambda: store.record_track_events("cli", "played", [track_id]),
            "model mood-4q-cldnn-9": lambda: store.register_model(
                "mood-4q-cldnn", "9", "cldnn", "0" * 64, {}, live=True),
            "live models": lambda: store.keep_live([]),
            "retraining job": lambda: store.start_job("tester"),
            "retraining jobs": lambda: store.fail_unfinished_jobs("stopped"),
            "pruning predictions": lambda: store.prune_predictions("cldnn=other*1"),
        }
        for what, write in writes.items():
            lock = WriteLock(tmp_path / "mood.db")
            try:
                with pytest.raises(StorageError) as info:
                    await write()
            finally:
                lock.release()
            assert str(info.value) == (
                f"{what}: the database refused the write (database is locked: another "
                "program held its write lock past the busy timeout); nothing was stored")
        assert await _rows(store, Feedback) == 0 and await _rows(store, TrackEvent) == 0
        assert await _rows(store, RetrainJob) == 0 and await _rows(store, Prediction) == 1
        # Once the lock is gone the same write goes through.
        await store.set_feedback("cli", "me", track_id, "Q2")
        assert await _rows(store, Feedback) == 1


async def test_history_says_a_locked_database_as_a_service_error(tmp_path: Path) -> None:
    async with _store(tmp_path / "mood.db", busy_ms=200) as store:
        stored = await store.record_analysis(*_records(tmp_path / "a.wav"))
        history = History(store, window=10)
        lock = WriteLock(tmp_path / "mood.db")
        try:
            with pytest.raises(ServiceError, match=r"^history of cli: .*database is locked"):
                await history.remember("cli", "played", [stored.track.id])
        finally:
            lock.release()


async def test_the_service_says_a_locked_database_in_one_line(tmp_path: Path,
                                                               cldnn_dir: Path) -> None:
    settings = _settings(tmp_path, cldnn_dir, busy_ms=300)
    async with await MoodService.create(settings, allow_local_files=True) as service:
        clip = _clip(tmp_path, "Artist - Locked.wav")
        lock = WriteLock(settings.data_dir / "mood.db")
        try:
            with pytest.raises(ServiceError, match="database is locked"):
                await service.classify(str(clip))
        finally:
            lock.release()
        assert await _count(service, Track) == 0


# --- audio cache: disk full -----------------------------------------------------------------


class _DiskFull:
    """The ``os`` module as the audio cache sees it, on a full disk: its files take half of
    what is written, then the write fails with ENOSPC."""

    def __init__(self) -> None:
        self.partial: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fdopen(self, fd: int, *args: Any, **kwargs: Any) -> IO[Any]:
        handle = os.fdopen(fd, *args, **kwargs)
        partial = self.partial
        real_write = handle.write

        def write(data: bytes) -> int:
            real_write(data[: len(data) // 2])
            handle.flush()
            partial.append(os.readlink(f"/proc/self/fd/{handle.fileno()}"))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        handle.write = write
        return handle


async def test_a_full_disk_loses_no_cached_audio_and_leaves_no_partial_file(
        tmp_path: Path, cldnn_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeDeezer() as deezer:
        settings = _settings(tmp_path, cldnn_dir, deezer=deezer.base)
        cache = AudioCache(settings.audio_cache_dir, max_bytes=10**6)
        kept = cache.put(tone_mp3(2.0, 330.0))
        before = {p: p.read_bytes() for p in settings.audio_cache_dir.rglob("*") if p.is_file()}

        full = _DiskFull()
        monkeypatch.setattr(audio_cache, "os", full)
        with pytest.raises(AudioCacheError, match="No space left on device") as info:
            cache.put(tone_mp3(2.0, 440.0))
        assert str(settings.audio_cache_dir) in info.value.reason
        async with await MoodService.create(settings) as service:
            with pytest.raises(ServiceError, match=r"^cannot store \d+ bytes in .*audio-cache: "
                                                   "No space left on device$"):
                await service.classify(QUERY)
            assert await _count(service, Track) == 0
        monkeypatch.undo()

        assert len(full.partial) == 2  # both writes really began
        after = {p: p.read_bytes() for p in settings.audio_cache_dir.rglob("*") if p.is_file()}
        assert after == before and cache.get(kept.sha256) is not None
        assert not any(Path(p.removesuffix(" (deleted)")).exists() for p in full.partial)


# --- a worker killed mid-classification -------------------------------------------------------


def _workers() -> list[int]:
    """Pool workers of this process (children started by multiprocessing's spawn)."""
    me, found = os.getpid(), []
    for task in os.listdir(f"/proc/{me}/task"):
        with contextlib.suppress(FileNotFoundError):
            for pid in Path(f"/proc/{me}/task/{task}/children").read_text().split():
                with contextlib.suppress(FileNotFoundError):
                    if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        found.append(int(pid))
    return found


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


async def _kill_the_busy_worker(task: asyncio.Task[Any]) -> int:
    """SIGKILL the worker that is computing (its CPU time grows) while ``task`` waits."""
    deadline = time.monotonic() + 30
    base = {pid: _cpu_ticks(pid) for pid in _workers()}
    while time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.05)
        for pid in _workers():
            if _cpu_ticks(pid) - base.setdefault(pid, _cpu_ticks(pid)) >= 30:  # 0.3 s busy
                os.kill(pid, signal.SIGKILL)
                return pid
    raise AssertionError("no worker got busy")


async def test_a_worker_killed_mid_classification_is_replaced_and_the_input_retried(
        tmp_path: Path, cldnn_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 24 windows of a 60 s clip: seconds of work per input, so the kill lands mid-way.
    settings = _settings(tmp_path, cldnn_dir, workers=2, n_windows=24)
    clips = [_clip(tmp_path, f"Artist - Song {i}.wav", 60.0, seed=i) for i in range(3)]
    async with await MoodService.create(settings, allow_local_files=True) as service:
        await service.classify(str(clips[0]))  # workers up and warm

        task = asyncio.ensure_future(service.classify(str(clips[1])))
        killed = await _kill_the_busy_worker(task)
        mood = await task  # sent again, to fresh workers
        assert not mood.cached and mood.result.input == str(clips[1])
        assert np.isfinite(list(mood.result.probabilities.values())).all()
        assert killed not in _workers()

        monkeypatch.setattr("mer_models.pool.MAX_TRIES", 1)
        task = asyncio.ensure_future(service.classify(str(clips[2])))
        await _kill_the_busy_worker(task)
        with pytest.raises(ServiceError, match=r"^a classification worker died while "
                                               r"analysing it \(1 try; killed, or out of "
                                               r"memory\?\)$"):
            await task
        assert await _count(service, Prediction) == 2  # clips 0 and 1, nothing of clip 2


# --- a model file changed on disk ---------------------------------------------------------------


def _flip_a_byte(folder: Path) -> Path:
    artifact = next(folder.glob("*.onnx"))
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    return artifact


async def test_a_model_file_changed_on_disk_is_refused_and_the_old_model_serves(
        tmp_path: Path, cldnn_dir: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(cldnn_dir, models)
    settings = _settings(tmp_path, models)
    async with await MoodService.create(settings, allow_local_files=True) as service:
        versions = service.versions
        before = await service.classify(str(_clip(tmp_path, "A - One.wav", seed=1)))
        _flip_a_byte(models)

        with pytest.raises(ModelCardError, match=r"sha256 \w+\.\.\. does not match its card"):
            MoodEngine(models)
        with pytest.raises(ServiceError, match=r"does not match its card \(\w+\.\.\.\); "
                                               "refusing to load"):
            await service.reload_models()
        assert service.versions == versions
        after = await service.classify(str(_clip(tmp_path, "A - Two.wav", seed=2)))
        assert not after.cached and after.result.models == before.result.models


async def test_pool_workers_started_after_the_change_say_so(tmp_path: Path,
                                                             cldnn_dir: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(cldnn_dir, models)
    settings = _settings(tmp_path, models, workers=2)
    async with await MoodService.create(settings, allow_local_files=True) as service:
        _flip_a_byte(models)  # before the first input: the workers start after the change
        for name in ("A - One.wav", "A - Two.wav"):  # the pool is not broken by it
            with pytest.raises(ServiceError, match=r"the worker could not load the models: "
                                                   r".*does not match its card"):
                await service.classify(str(_clip(tmp_path, name)))
