"""MoodService: resolve, classify once, remember; and `mer classify`/`mer scan` through it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from sqlalchemy import func, select

from bot.service import MoodService, ServiceError
from bot.settings import Settings
from bot.storage.migrate import upgrade
from bot.storage.models import AudioFeatures, Prediction, Track
from mer_models.engine import MoodEngine
from tests.fakes.audio import tone_mp3
from tests.fakes.servers import CATALOGUE, FakeDeezer
from tests.synth import SR, mood_clip
from tests.tiny_models import reweighted_copy


def _settings(tmp: Path, models: Path, *, workers: int = 1, auto_upgrade: bool = False,
              deezer: str | None = None) -> Settings:
    sources: dict[str, object] = {"source_order": ["deezer"], "allow_private_urls": True,
                                  "http_retries": 0}
    if deezer is not None:
        sources["deezer_api_base"] = deezer
    return Settings.load(None, data_dir=tmp, engine={"models_dir": models, "workers": workers},
                         storage={"auto_upgrade": auto_upgrade}, sources=sources)


def _with_deezer(settings: Settings, base: str) -> Settings:
    sources = settings.sources.model_copy(update={"deezer_api_base": base})
    return settings.model_copy(update={"sources": sources})


@pytest.fixture
def settings(tmp_path: Path, tiny_models_dir: Path) -> Settings:
    s = _settings(tmp_path, tiny_models_dir)
    upgrade(s.database_url)
    return s


@pytest.fixture
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "library"
    folder.mkdir()
    for i in range(10):
        sf.write(folder / f"Artist {i} - Song {i}.wav",
                 mood_clip(f"Q{i % 4 + 1}", seconds=6.0, seed=200 + i), SR)
    return folder


async def _count(service: MoodService, model: type) -> int:
    async with service.store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _prediction_ids(service: MoodService) -> set[int]:
    async with service.store.sessions() as session:
        return set((await session.scalars(select(Prediction.id))).all())


async def test_concurrent_requests_classify_each_track_once(
        settings: Settings, library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = MoodEngine.classify

    def counting(self: MoodEngine, source: object, **kwargs: object) -> object:
        calls.append(str(source))
        return original(self, source, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(MoodEngine, "classify", counting)
    files = sorted(library.iterdir())
    async with await MoodService.create(settings, allow_local_files=True) as service:
        moods = await asyncio.gather(*(service.classify(str(files[i % 10]))
                                       for i in range(50)))
        assert await _count(service, Prediction) == 10
        assert await _count(service, Track) == 10
        assert await _count(service, AudioFeatures) == 10
        again = await service.classify(str(files[0]))
    assert len(calls) == 10  # single flight: one classification per track
    by_track: dict[int, set[str]] = {}
    for mood in moods:
        by_track.setdefault(mood.track_id, set()).add(json.dumps(mood.result.probabilities))
    assert len(by_track) == 10 and all(len(v) == 1 for v in by_track.values())
    assert again.cached and again.provider == "local"
    assert again.result.probabilities == moods[0].result.probabilities
    assert again.result.input == str(files[0])
    assert (again.artist, again.title) == ("Artist 0", "Song 0")


async def test_scan_is_incremental(settings: Settings, library: Path) -> None:
    (library / "notes.mp3").write_text("not audio")
    async with await MoodService.create(settings, allow_local_files=True) as service:
        first = await service.scan(library)
        assert (first.total, first.classified, first.unchanged) == (11, 10, 0)
        assert list(first.failed) == [str(library / "notes.mp3")]
        assert sum(first.quadrants.values()) == 10
        second = await service.scan(library)
        assert (second.classified, second.unchanged) == (0, 10)
        before = await _prediction_ids(service)
        changed = library / "Artist 3 - Song 3.wav"
        sf.write(changed, mood_clip("Q2", seconds=7.0, seed=999), SR)
        os.utime(changed, ns=(10**18, 10**18))
        third = await service.scan(library)
        assert (third.classified, third.unchanged) == (1, 9)
        after = await _prediction_ids(service)
        assert len(after) == 10 and len(after - before) == 1  # the changed file's mood redone
    with pytest.raises(ServiceError, match="not a directory"):
        async with await MoodService.create(settings) as service:
            await service.scan(library / "missing")


async def test_new_fusion_weights_classify_again(settings: Settings, library: Path,
                                                 tiny_models_dir: Path, tmp_path: Path) -> None:
    """Same models, other fusion weights: other moods, so the stored ones are not reused."""
    async with await MoodService.create(settings, allow_local_files=True) as service:
        assert (await service.scan(library)).classified == 10
        old_key = service.models_key
    reweighted = reweighted_copy(tiny_models_dir, tmp_path / "reweighted")
    moved = settings.model_copy(update={"engine": settings.engine.model_copy(
        update={"models_dir": reweighted})})
    async with await MoodService.create(moved, allow_local_files=True) as service:
        assert service.versions == MoodEngine(tiny_models_dir, threads=1).versions
        assert service.models_key != old_key
        again = await service.scan(library)
        assert (again.classified, again.unchanged) == (10, 0)
        assert (await service.scan(library)).unchanged == 10
        assert await _count(service, Prediction) == 20  # the old weights' moods stay theirs


async def test_out_of_date_schema_is_refused(tmp_path: Path, tiny_models_dir: Path) -> None:
    fresh = _settings(tmp_path, tiny_models_dir)
    upgrade(fresh.database_url, "0001")
    with pytest.raises(ServiceError, match="mer db upgrade"):
        await MoodService.create(fresh)
    upgraded = _settings(tmp_path, tiny_models_dir, auto_upgrade=True)
    async with await MoodService.create(upgraded) as service:
        assert service.versions["cldnn"] == "mood-4q-cldnn-test"
        live = await service.store.live_models()
        assert {(m.kind, m.name, m.version) for m in live} == {
            ("cldnn", "mood-4q-cldnn", "test"), ("ensemble", "mood-4q-ensemble", "test")}
    async with await MoodService.create(upgraded) as service:  # a restart registers nothing new
        assert len(await service.store.live_models()) == 2


async def test_search_text_through_fake_deezer(settings: Settings) -> None:
    song = CATALOGUE[0]
    async with FakeDeezer() as deezer:
        deezer.audio = tone_mp3(8.0, 440.0)
        async with await MoodService.create(_with_deezer(settings, deezer.base)) as service:
            mood = await service.classify(f"{song.artist} - {song.title}")
            assert (mood.title, mood.artist, mood.provider) == (song.title, song.artist,
                                                                "deezer")
            assert not mood.cached
            again = await service.classify(f"{song.artist} - {song.title}")
            assert again.cached and again.track_id == mood.track_id
            with pytest.raises(ServiceError):
                await service.classify("nothing matches this at all")
            with pytest.raises(ServiceError, match="empty query"):
                await service.classify("   ")


async def test_failing_source_gives_clear_message(settings: Settings) -> None:
    async with FakeDeezer() as deezer:
        deezer.fail("/search", 500, times=None)
        async with await MoodService.create(_with_deezer(settings, deezer.base)) as service:
            with pytest.raises(ServiceError, match="deezer"):
                await service.classify("The Oscillators - Sunny Sine")


async def test_cli_classify_search_text_against_fakes(tmp_path: Path,
                                                      tiny_models_dir: Path) -> None:
    """End to end as a user would: `mer db upgrade`, then `mer classify "artist - title"`."""
    song = CATALOGUE[1]
    mer = shutil.which("mer", path=str(Path(sys.executable).parent))
    assert mer is not None, "the project must be installed (pip install -e .)"
    async with FakeDeezer() as deezer:
        deezer.audio = tone_mp3(8.0, 220.0)
        env = {**os.environ, "MER_DATA_DIR": str(tmp_path), "MER_MODELS_DIR":
               str(tiny_models_dir), "MER_DEEZER_API_BASE": deezer.base,
               "MER_SOURCE_ORDER": "deezer", "MER_ALLOW_PRIVATE_URLS": "true",
               "MER_WORKERS": "1"}

        async def mer_run(*args: str) -> subprocess.CompletedProcess[str]:
            proc = await asyncio.create_subprocess_exec(
                mer, *args, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
            out, err = await proc.communicate()
            return subprocess.CompletedProcess(args, proc.returncode or 0, out.decode(),
                                               err.decode())

        assert (await mer_run("db", "upgrade")).returncode == 0
        first = await mer_run("classify", f"{song.artist} - {song.title}", "--json")
        assert first.returncode == 0, first.stderr
        answer = json.loads(first.stdout)
        assert answer["track"]["title"] == song.title and not answer["track"]["cached"]
        assert set(answer["probabilities"]) == {"Q1", "Q2", "Q3", "Q4"}
        second = await mer_run("classify", f"{song.artist} - {song.title}", "--json")
        assert json.loads(second.stdout)["track"]["cached"] is True
        deezer.fail("/search", 500, times=None)
        failed = await mer_run("classify", "Someone Else - Unknown Song")
        assert failed.returncode == 1
        assert failed.stderr.startswith("error: Someone Else - Unknown Song: ")
        assert "Traceback" not in failed.stderr

        # A file goes through the service too: the second run answers from the database.
        clip = tmp_path / "Someone - Something.wav"
        sf.write(clip, mood_clip("Q1", seconds=6.0, seed=3), SR)
        runs = [json.loads((await mer_run("classify", str(clip), "--json")).stdout)
                for _ in range(2)]
        assert [r["track"]["cached"] for r in runs] == [False, True]
        assert runs[0]["input"] == runs[1]["input"] == str(clip)
        assert runs[0]["probabilities"] == runs[1]["probabilities"]
        assert runs[0]["track"]["id"] == runs[1]["track"]["id"]


async def test_a_pool_of_two_workers_classifies_like_a_thread(
        tmp_path: Path, tiny_models_dir: Path, library: Path) -> None:
    """`mer scan`'s default is a process pool: same answers as the worker thread."""
    pooled = _settings(tmp_path / "pool", tiny_models_dir, workers=2, auto_upgrade=True)
    threaded = _settings(tmp_path / "thread", tiny_models_dir, workers=1, auto_upgrade=True)
    answers = []
    for settings in (pooled, threaded):
        async with await MoodService.create(settings, allow_local_files=True) as service:
            assert service.workers == settings.engine.workers
            report = await service.scan(library)
            assert (report.classified, report.failed) == (10, {})
            moods = [await service.classify(str(p)) for p in sorted(library.iterdir())]
            assert all(m.cached for m in moods)
            answers.append([m.result.probabilities for m in moods])
    for pooled_p, thread_p in zip(*answers, strict=True):
        assert pooled_p == pytest.approx(thread_p, abs=1e-4)


async def test_scan_survives_odd_names_and_vanishing_files(
        settings: Settings, library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = library / "odd.wav"
    sf.write(plain, mood_clip("Q3", seconds=6.0, seed=7), SR)
    os.rename(bytes(plain), bytes(library) + b"/caf\xe9 \xff - Song.wav")  # not UTF-8
    doomed = library / "Artist 5 - Song 5.wav"
    from bot.service import library as library_module

    walk = library_module.audio_files

    def walk_then_delete(directory: Path) -> list[Path]:
        found = walk(directory)
        doomed.unlink(missing_ok=True)  # deleted between the walk and its turn
        return found

    monkeypatch.setattr("bot.service.mood.audio_files", walk_then_delete)
    async with await MoodService.create(settings, allow_local_files=True) as service:
        report = await service.scan(library)
        assert report.classified == 10 and list(report.failed) == [str(doomed)]
        assert "no such file" in report.failed[str(doomed)].lower()
        async with service.store.sessions() as session:
            artists = set((await session.scalars(select(Track.artist))).all())
        assert "caf\\xe9 \\xff" in artists  # the odd bytes, written out
        again = await service.scan(library)
        assert (again.classified, again.unchanged) == (0, 10)


async def test_bad_database_is_one_clear_error(tmp_path: Path, tiny_models_dir: Path) -> None:
    not_sqlite = tmp_path / "mood.db"
    not_sqlite.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ServiceError, match=r"^database .*mood\.db: file is not a database$"):
        await MoodService.create(_settings(tmp_path, tiny_models_dir))
    bad_url = Settings.load(None, data_dir=tmp_path, storage={
        "database_url": "postgresql+nosuchdriver://user:hunter2@db.example/mood"})
    with pytest.raises(ServiceError) as caught:
        await MoodService.create(bad_url)
    assert "hunter2" not in str(caught.value) and "\n" not in str(caught.value)


async def test_an_empty_database_gets_the_schema(tmp_path: Path, tiny_models_dir: Path) -> None:
    async with await MoodService.create(_settings(tmp_path, tiny_models_dir)) as service:
        assert await service.store.count_predictions() == 0


async def test_recommendations_come_from_the_stored_library(settings: Settings,
                                                             library: Path) -> None:
    async with await MoodService.create(settings, allow_local_files=True) as service:
        with pytest.raises(ServiceError, match="empty"):
            await service.recommendations.recommend("calm", 3)
        await service.scan(library)
        stored = await service.recommendations.library()
        assert len(stored) == 10 and all(m.location and Path(m.location).is_file()
                                         for m in stored)
        quadrant = max(("Q1", "Q2", "Q3", "Q4"),
                       key=lambda q: sum(m.quadrant == q for m in stored))
        picks = await service.recommendations.recommend(quadrant, 3)
        assert picks and all(p.track.quadrant == quadrant for p in picks)
        assert all(p.reason for p in picks)
        like = await service.recommendations.recommend(str(sorted(library.iterdir())[0]), 3)
        assert like and all(p.track.location != str(sorted(library.iterdir())[0])
                            for p in like)
        walk = await service.recommendations.journey("sad", "happy", 4)
        assert len(walk) == 4 and len({p.track.track_id for p in walk}) == 4
        assert all(p.target is not None for p in walk)
        with pytest.raises(ServiceError, match="steps"):
            await service.recommendations.journey("sad", "happy", 1)
