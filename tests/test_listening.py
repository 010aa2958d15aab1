"""The listener (bot/service/listening.py): fast tests with an in-memory player and service,
then against a real, throwaway MPD (tests/fakes/mpd.py) with the tiny models: classify ahead,
stickers, auto-DJ, journey, a song with no file, the daemon killed and restarted; and
``python -m bot.player listen`` (what ``mer listen`` runs) end to end."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Literal

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.player.listen import StatusLine, parse_mpd
from bot.player.mpd import MpdPlayer
from bot.recommend import CENTRES, Candidate, MoodRecommender, quadrant_of
from bot.service import MoodService
from bot.service.listening import (
    ListenConfig,
    Listener,
    ListenEvent,
    mood_stickers,
)
from bot.service.mood import TrackMood
from bot.service.player import (
    OutsideMusicRoot,
    PlayerError,
    PlayerUnavailable,
    QueuedTrack,
    local_pick,
)
from bot.service.recommendations import Pick, Picks
from bot.settings import Settings
from bot.storage.migrate import upgrade
from bot.storage.store import StoredMood
from mer_models.result import MoodResult
from tests.fakes.mpd import MpdDaemon

FAST = {"backoff_s": (0.05,), "command_timeout_s": 5.0, "keepalive_s": None}


async def until(check: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout_s} s: {what}")
        await asyncio.sleep(0.02)


class Events(list[ListenEvent]):
    """A reporter that keeps every event."""

    def __call__(self, event: ListenEvent) -> None:
        self.append(event)

    def of(self, kind: str) -> list[ListenEvent]:
        return [e for e in self if e.kind == kind]

    def at_least(self, kind: str, count: int) -> Callable[[], bool]:
        return lambda: len(self.of(kind)) >= count

    def messages(self, kind: str) -> list[str]:
        return [e.message for e in self.of(kind)]


# --- an in-memory player and service ---------------------------------------------------------

PROBS = {"Q1": (0.7, 0.1, 0.1, 0.1), "Q2": (0.1, 0.7, 0.1, 0.1),
         "Q3": (0.1, 0.1, 0.7, 0.1), "Q4": (0.1, 0.1, 0.1, 0.7)}


def track_mood(track_id: int, artist: str, quadrant: str) -> TrackMood:
    probabilities = dict(zip(("Q1", "Q2", "Q3", "Q4"), PROBS[quadrant], strict=True))
    result = MoodResult(input=str(track_id), probabilities=probabilities, windows=[],
                        models={"m": "m-1"})
    return TrackMood(track_id, f"Song {track_id}", artist, "local", result, cached=False)


class FakePlayer:
    """A queue in memory: the Player protocol, with play/next/clear for the tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.queue: list[QueuedTrack] = []
        self.index: int | None = None
        self.next_id = 1
        self.down = False
        self._changes: asyncio.Queue[frozenset[str]] = asyncio.Queue()

    @property
    def scope(self) -> str:
        return "fake:1"

    def _check(self) -> None:
        if self.down:
            raise PlayerUnavailable("fake player is down")

    def _renumber(self) -> None:
        self.queue = [QueuedTrack(t.song_id, i, t.uri, t.title, t.artist, t.duration_s,
                                  t.path, t.no_file_reason) for i, t in enumerate(self.queue)]

    async def current(self) -> QueuedTrack | None:
        self._check()
        return None if self.index is None else self.queue[self.index]

    async def upcoming(self, limit: int | None = None) -> list[QueuedTrack]:
        self._check()
        start = 0 if self.index is None else self.index + 1
        rest = self.queue[start:]
        return rest if limit is None else rest[:limit]

    def playable(self, pick: Pick) -> Path | None:
        return local_pick(pick)

    async def add(self, track: str | Path, after_current: bool = False) -> int:
        self._check()
        path = Path(track) if isinstance(track, Path) else self.root / track
        if not path.is_relative_to(self.root):
            raise OutsideMusicRoot(path, f"{path} is outside the music root")
        entry = QueuedTrack(self.next_id, 0, path.relative_to(self.root).as_posix(),
                            path.stem, None, 60.0, path)
        self.next_id += 1
        where = (self.index + 1 if after_current and self.index is not None
                 else len(self.queue))
        self.queue.insert(where, entry)
        self._renumber()
        self.changed("playlist")
        return entry.song_id

    def queue_uri(self, uri: str, *, exists: bool = True) -> None:
        path = self.root / uri
        entry = QueuedTrack(self.next_id, len(self.queue), uri, Path(uri).stem, None, 60.0,
                            path if exists else None, None if exists else "no file there")
        self.next_id += 1
        self.queue.append(entry)
        self.changed("playlist")

    def play(self, index: int) -> None:
        self.index = index
        self.changed("player")

    def changed(self, *names: str) -> None:
        self._changes.put_nowait(frozenset(names))

    def events(self) -> AsyncIterator[frozenset[str]]:
        async def drain() -> AsyncIterator[frozenset[str]]:
            while True:
                yield await self._changes.get()
        return drain()


class FakeRecommendations:
    def __init__(self, library: list[StoredMood]) -> None:
        self.library = library
        self.recommender = MoodRecommender()
        self.plays: list[tuple[str, list[int]]] = []
        self.journeys: list[tuple[object, object, int]] = []

    async def recommend(self, target: Candidate | str | tuple[float, float], n: int = 10, *,
                        seed: int = 0, scope: str | None = None) -> Picks:
        quadrant = target.quadrant if isinstance(target, Candidate) else quadrant_of(str(target))
        fits = [s for s in self.library if s.quadrant == quadrant]
        fits += [s for s in self.library if s.quadrant != quadrant]
        return Picks([Pick(s, f"{s.quadrant} like it") for s in fits][:n])

    async def journey(self, start: Candidate | str | tuple[float, float],
                      end: Candidate | str | tuple[float, float], steps: int = 5, *,
                      route: Literal["line", "circumplex"] = "line", seed: int = 0,
                      scope: str | None = None) -> Picks:
        self.journeys.append((start, end, steps))
        picks = [Pick(s, f"step {i + 1}", (0.5, 0.5)) for i, s in
                 enumerate(self.library[:steps + 3])]  # the first two are unplayable
        return Picks(picks)

    async def played(self, scope: str, track_ids: Sequence[int]) -> None:
        self.plays.append((scope, list(track_ids)))


class FakeService:
    def __init__(self, root: Path, moods: dict[str, TrackMood],
                 library: list[StoredMood]) -> None:
        self.root = root
        self.moods = moods
        self.calls: list[str] = []
        self._recommendations = FakeRecommendations(library)

    @property
    def recommendations(self) -> FakeRecommendations:
        return self._recommendations

    async def classify(self, query: str) -> TrackMood:
        self.calls.append(query)
        await asyncio.sleep(0)
        uri = Path(query).relative_to(self.root).as_posix()
        return self.moods[uri]


ARTISTS = ("A", "A", "B", "B", "C", "C", "D", "D")
QUADS = ("Q1", "Q1", "Q1", "Q1", "Q2", "Q1", "Q4", "Q1")


@pytest.fixture
def fake(tmp_path: Path) -> tuple[FakePlayer, FakeService]:
    root = tmp_path / "music"
    moods = {f"t{i}.flac": track_mood(i, ARTISTS[i], QUADS[i]) for i in range(8)}
    library = [StoredMood(i, f"Song {i}", ARTISTS[i], 60.0, QUADS[i], 0.8, 0.8, 0.7, None,
                          "local", str(root / f"t{i}.flac")) for i in range(8)]
    library.append(StoredMood(99, "Elsewhere", "E", 60.0, "Q1", 0.8, 0.8, 0.9, None, "local",
                              str(tmp_path / "outside.flac")))
    library.append(StoredMood(98, "Catalogue", "F", 60.0, "Q1", 0.8, 0.8, 0.9, None, "deezer",
                              "https://example.invalid/98"))
    library.sort(key=lambda s: -s.confidence)  # the unplayable ones come first
    return FakePlayer(root), FakeService(root, moods, library)


async def test_fake_classifies_ahead_once_and_records_plays(
        fake: tuple[FakePlayer, FakeService]) -> None:
    player, service = fake
    annotated: list[str] = []

    async def note(track: QueuedTrack, mood: TrackMood) -> None:
        annotated.append(track.uri)

    events = Events()
    listener = Listener(player, service, ListenConfig(ahead=2), report=events, annotate=note)
    for i in range(4):
        player.queue_uri(f"t{i}.flac")
    await listener.step()
    assert [e.track.uri for e in events.of("classified") if e.track] == ["t0.flac", "t1.flac"]
    assert not events.of("playing")  # nothing plays yet: classified before it plays
    player.play(0)
    await listener.step()
    await listener.step()
    assert [e.track.uri for e in events.of("classified") if e.track] == [
        "t0.flac", "t1.flac", "t2.flac"]  # each once, always two ahead
    assert annotated == ["t0.flac", "t1.flac", "t2.flac"]
    assert "happy" in events.messages("playing")[0]
    assert service.recommendations.plays == [("fake:1", [0])]
    player.play(1)
    await listener.step()
    assert service.recommendations.plays == [("fake:1", [0]), ("fake:1", [1])]


async def test_fake_every_mode_annotates_and_a_refusal_outside_annotate_mode_stops_it(
        fake: tuple[FakePlayer, FakeService]) -> None:
    player, service = fake
    annotated: list[str] = []

    async def note(track: QueuedTrack, mood: TrackMood) -> None:
        annotated.append(track.uri)
        if track.uri == "t1.flac":
            raise PlayerError("sticker database disabled")

    events = Events()
    listener = Listener(player, service, ListenConfig(mode="suggest", ahead=3),
                        report=events, annotate=note)
    for i in range(4):
        player.queue_uri(f"t{i}.flac")
    await listener.step()
    assert annotated == ["t0.flac", "t1.flac"]  # t2, t3: annotation stopped after the refusal
    assert events.messages("problem") == ["cannot annotate t1: sticker database disabled"]
    assert events.messages("info") == ["annotation is off for this run (the player refused it)"]


async def test_fake_a_track_without_a_file_is_reported_once_and_the_rest_goes_on(
        fake: tuple[FakePlayer, FakeService]) -> None:
    player, service = fake
    events = Events()
    listener = Listener(player, service, ListenConfig(ahead=3), report=events)
    player.queue_uri("gone.flac", exists=False)
    player.queue_uri("t1.flac")
    await listener.step()
    await listener.step()
    problems = events.messages("problem")
    assert problems == ["cannot classify gone: no file there"]
    assert [e.track.uri for e in events.of("classified") if e.track] == ["t1.flac"]


async def test_fake_autodj_fills_to_keep_with_playable_tracks_under_the_cap(
        fake: tuple[FakePlayer, FakeService]) -> None:
    player, service = fake
    events = Events()
    listener = Listener(player, service, ListenConfig(mode="autodj", keep=3), report=events)
    player.queue_uri("t0.flac")
    player.play(0)
    await listener.step()
    upcoming = player.queue[1:]
    assert len(upcoming) == 3
    assert all(t.path is not None and t.path.is_relative_to(player.root) for t in upcoming)
    artists = [ARTISTS[int(t.uri[1])] for t in player.queue]
    assert len(set(artists)) == len(artists), artists  # artist cap 1, the current one counted
    assert len(events.of("added")) == 3 and all(e.reason for e in events.of("added"))
    await listener.step()
    assert len(player.queue) == 4  # full: nothing more is added


async def test_fake_autodj_after_current_inserts_next(
        fake: tuple[FakePlayer, FakeService]) -> None:
    player, service = fake
    listener = Listener(player, service, ListenConfig(mode="autodj", keep=2,
                                                      after_current=True), report=Events())
    player.queue_uri("t0.flac")
    player.queue_uri("t2.flac")
    player.play(0)
    await listener.step()
    assert player.queue[-1].uri == "t2.flac" and len(player.queue) == 3


async def test_fake_suggest_and_journey(fake: tuple[FakePlayer, FakeService]) -> None:
    player, service = fake
    events = Events()
    suggest = Listener(player, service, ListenConfig(mode="suggest"), report=events)
    player.queue_uri("t0.flac")
    player.play(0)
    await suggest.step()
    assert len(events.of("suggested")) == 1 and len(events.of("suggested")[0].picks) == 3

    journey_events = Events()
    journey = Listener(player, service, ListenConfig(mode="journey", to="calm", steps=3),
                       report=journey_events)
    await journey.step()
    [(start, end, steps)] = service.recommendations.journeys
    assert start == pytest.approx((0.8, 0.8)) and (end, steps) == ("calm", 3)
    assert len(journey_events.of("added")) == 1
    assert player.queue[1].song_id > player.queue[0].song_id  # queued right after current
    player.play(1)
    await journey.step()
    assert len(journey_events.of("added")) == 2
    with pytest.raises(ValueError, match="target mood"):
        ListenConfig(mode="journey")


async def test_fake_an_outage_is_reported_once_and_the_listener_recovers(
        fake: tuple[FakePlayer, FakeService]) -> None:
    player, service = fake
    events = Events()
    listener = Listener(player, service, report=events)
    player.down = True
    await listener.step()
    await listener.step()
    assert len(events.of("problem")) == 1 and "waiting" in events.messages("problem")[0]
    player.down = False
    player.queue_uri("t3.flac")
    await listener.step()
    assert events.of("info") and events.of("classified")


async def test_fake_run_follows_events(fake: tuple[FakePlayer, FakeService]) -> None:
    player, service = fake
    events = Events()
    task = asyncio.create_task(Listener(player, service, report=events).run())
    try:
        player.queue_uri("t4.flac")
        await until(lambda: len(events.of("classified")) == 1, 2.0)
        player.play(0)
        await until(lambda: len(events.of("playing")) == 1, 2.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_status_line_plain_and_live(tmp_path: Path) -> None:
    import io

    out, err = io.StringIO(), io.StringIO()
    plain = StatusLine(out, err)
    plain(ListenEvent("playing", "now playing X"))
    plain(ListenEvent("problem", "bad"))
    assert out.getvalue() == "playing: now playing X\n" and err.getvalue() == "problem: bad\n"
    out, err = io.StringIO(), io.StringIO()
    live = StatusLine(out, err, live=True)
    live(ListenEvent("playing", "now playing X"))
    live(ListenEvent("classified", "classified Y"))
    live.close()
    assert out.getvalue().count("\r\x1b[K") == 2 and out.getvalue().endswith(
        "now playing X | classified Y\n")
    assert parse_mpd("127.0.0.1:6601") == ("127.0.0.1", 6601)
    assert parse_mpd("/run/mpd/socket") == ("/run/mpd/socket", 6600)
    assert parse_mpd("[::1]:7000") == ("::1", 7000)


# --- against a real MPD ----------------------------------------------------------------------


def _settings(data_dir: Path, models: Path, daemon: MpdDaemon) -> Settings:
    return Settings.load(None, data_dir=data_dir,
                         engine={"models_dir": models, "workers": 1, "n_windows": 1},
                         player={"mpd_host": daemon.host, "mpd_port": daemon.port,
                                 "mpd_music_root": daemon.music_dir})


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path,
            mpd_daemon: MpdDaemon) -> Path:
    """A data folder whose database holds the daemon's library, classified once."""
    folder = tmp_path_factory.mktemp("listen-data")
    settings = _settings(folder, tiny_models_dir, mpd_daemon)
    upgrade(settings.database_url)

    async def scan() -> None:
        async with await MoodService.create(settings, allow_local_files=True,
                                            workers=1) as service:
            report = await service.scan(mpd_daemon.music_dir)
            assert report.classified == len(mpd_daemon.tracks), report

    asyncio.run(scan())
    return folder


@pytest.fixture
async def service(scanned: Path, tmp_path: Path, tiny_models_dir: Path,
                  mpd_server: MpdDaemon) -> AsyncIterator[MoodService]:
    data = tmp_path / "data"
    shutil.copytree(scanned, data)  # a fresh history for each test
    settings = _settings(data, tiny_models_dir, mpd_server)
    async with await MoodService.create(settings, allow_local_files=True,
                                        workers=1) as created:
        yield created


@pytest.fixture
async def player(mpd_server: MpdDaemon) -> AsyncIterator[MpdPlayer]:
    async with MpdPlayer(mpd_server.player_settings(), **FAST) as player:  # type: ignore[arg-type]
        yield player


async def running(listener: Listener) -> asyncio.Task[None]:
    task = asyncio.create_task(listener.run())
    await asyncio.sleep(0)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def mpd(daemon: MpdDaemon, action: Callable[..., object]) -> object:
    with daemon.client() as client:
        return action(client)


def artist_of(daemon: MpdDaemon, uri: str) -> str:
    for track in daemon.tracks:
        if track.uri == uri:
            return track.artist or "Still Water"  # the untagged one is theirs by its name
    raise KeyError(uri)


async def test_mpd_classified_before_it_plays_and_stickers_found(
        mpd_server: MpdDaemon, player: MpdPlayer, service: MoodService) -> None:
    events = Events()

    async def stickers(track: QueuedTrack, mood: TrackMood) -> None:
        await player.set_stickers(track.uri, mood_stickers(mood))

    listener = Listener(player, service, ListenConfig(ahead=2), report=events,
                        annotate=stickers)
    task = await running(listener)
    try:
        uris = mpd_server.uris[:2]
        mpd(mpd_server, lambda c: [c.add(u) for u in uris])
        await until(lambda: len(events.of("annotated")) == 2, what="two annotated")
        assert not events.of("playing")  # MPD is stopped: classified before it plays
        for event in events.of("classified"):
            assert event.mood is not None and event.track is not None
            found = await player.find_by_sticker("mood", event.mood.result.mood)
            assert event.track.uri in found
            written = await player.stickers(event.track.uri)
            assert float(written["valence"]) == pytest.approx(event.mood.result.valence,
                                                              abs=1e-3)
        mpd(mpd_server, lambda c: c.play(0))
        await until(lambda: len(events.of("playing")) == 1, what="now playing")
        assert events.of("playing")[0].mood is not None
        assert len(events.of("classified")) == 2  # not classified again when it starts
        assert await service.recommendations.history.recent(player.scope)
    finally:
        await stop(task)


async def test_mpd_autodj_keeps_the_queue_at_n_under_the_artist_cap(
        mpd_server: MpdDaemon, player: MpdPlayer, service: MoodService) -> None:
    events = Events()
    keep = 2
    listener = Listener(player, service, ListenConfig(mode="autodj", keep=keep), report=events)
    mpd(mpd_server, lambda c: (c.add(mpd_server.uris[0]), c.play(0)))
    task = await running(listener)
    try:
        for played in range(2):
            await until(events.at_least("added", keep + played), what="added")
            await asyncio.sleep(0.3)  # nothing more is added once the queue is full
            status = mpd(mpd_server, lambda c: c.status())
            assert isinstance(status, dict)
            queue = mpd(mpd_server, lambda c: [s["file"] for s in c.playlistinfo()])
            assert isinstance(queue, list)
            position = int(status["song"])
            assert len(queue) - position - 1 == keep, queue
            window = [artist_of(mpd_server, u) for u in queue[position:]]
            assert len(set(window)) == len(window), window  # artist cap 1
            mpd(mpd_server, lambda c: c.next())
        assert all(e.reason and "auto-DJ" in e.reason for e in events.of("added"))
    finally:
        await stop(task)


async def test_mpd_journey_moves_toward_the_target(
        mpd_server: MpdDaemon, player: MpdPlayer, service: MoodService) -> None:
    events = Events()
    listener = Listener(player, service, ListenConfig(mode="journey", to="sad", steps=4),
                        report=events)
    mpd(mpd_server, lambda c: (c.add(mpd_server.uris[0]), c.play(0)))
    task = await running(listener)
    try:
        for step in range(1, 4):
            await until(events.at_least("added", step), what=f"step {step}")
            queue = mpd(mpd_server, lambda c: c.playlistinfo())
            status = mpd(mpd_server, lambda c: c.status())
            assert isinstance(queue, list) and isinstance(status, dict)
            added = events.of("added")[-1].picks[0]
            assert queue[int(status["song"]) + 1]["file"].endswith(
                Path(added.track.location or "").name)  # right after the current track
            mpd(mpd_server, lambda c: c.next())
        goal = CENTRES[quadrant_of("sad")]
        distances = [math.dist(e.picks[0].target or (0, 0), goal) for e in events.of("added")]
        assert distances == sorted(distances, reverse=True) and distances[0] > distances[-1]
    finally:
        await stop(task)


async def test_mpd_a_song_without_a_file_is_reported_and_the_listener_goes_on(
        mpd_server: MpdDaemon, service: MoodService, tmp_path: Path) -> None:
    partial = tmp_path / "partial-root"
    keep = mpd_server.uris[1]
    (partial / keep).parent.mkdir(parents=True)
    shutil.copy(mpd_server.music_dir / keep, partial / keep)
    settings = mpd_server.player_settings(mpd_music_root=partial)
    events = Events()
    async with MpdPlayer(settings, **FAST) as player:  # type: ignore[arg-type]
        task = await running(Listener(player, service, ListenConfig(ahead=3), report=events))
        try:
            missing = mpd_server.uris[0]
            mpd(mpd_server, lambda c: (c.add(missing), c.add(keep)))
            await until(lambda: bool(events.of("classified")), what="the other classified")
            problem = events.messages("problem")
            assert len(problem) == 1 and missing in problem[0]
            assert "has no file under the music root" in problem[0]
            mpd(mpd_server, lambda c: c.play(0))
            await until(lambda: bool(events.of("playing")), what="now playing")
            assert len(events.of("problem")) == 1  # reported once
        finally:
            await stop(task)


async def test_mpd_killed_and_restarted_the_listener_carries_on(
        mpd_server: MpdDaemon, player: MpdPlayer, service: MoodService) -> None:
    events = Events()
    task = await running(Listener(player, service, report=events))
    try:
        mpd(mpd_server, lambda c: c.add(mpd_server.uris[2]))
        await until(lambda: len(events.of("classified")) == 1, what="first classified")
        mpd_server.kill()
        await until(lambda: not player.connected, what="the outage noticed")
        await asyncio.sleep(0.2)  # the player retries meanwhile; the listener waits
        assert not task.done()
        await mpd_server.arestart()
        await until(lambda: player.connected, what="reconnected")
        mpd(mpd_server, lambda c: c.add(mpd_server.uris[3]))
        await until(lambda: len(events.of("classified")) == 2, what="classified after")
        assert not task.done()
    finally:
        await stop(task)
        mpd_server.reset()


# --- the command -----------------------------------------------------------------------------


def test_mer_listen_is_registered() -> None:
    result = CliRunner().invoke(app, ["listen", "--help"])
    assert result.exit_code == 0
    for option in ("--mpd", "--music-root", "--mode", "--to", "--steps", "--ahead", "--keep"):
        assert option in result.output


async def test_listen_command_annotates_and_stops_cleanly_on_ctrl_c(
        mpd_server: MpdDaemon, scanned: Path, tiny_models_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(scanned, data)
    env = {**os.environ, "MER_DATA_DIR": str(data), "MER_MODELS_DIR": str(tiny_models_dir),
           "MER_N_WINDOWS": "1"}
    mpd(mpd_server, lambda c: c.add(mpd_server.uris[4]))
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.player", "listen", "--mpd",
         f"{mpd_server.host}:{mpd_server.port}", "--music-root", str(mpd_server.music_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=Path(__file__).resolve().parents[1])
    try:
        def annotated() -> bool:
            stickers = mpd(mpd_server, lambda c: _stickers(c, mpd_server.uris[4]))
            return bool(stickers)
        await until(annotated, 30.0, "stickers written by the command")
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.to_thread(process.communicate, timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "classified: classified Minor Key - Low Hum" in out and "stopped listening" in err
    assert "Traceback" not in err


def _stickers(client: object, uri: str) -> dict[str, str]:
    from mpd import CommandError

    try:
        return dict(client.sticker_list("song", uri))  # type: ignore[attr-defined]
    except CommandError:
        return {}


