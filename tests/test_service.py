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

from bot.db.errors import SchemaOutOfDateError
from bot.db.migrate import upgrade
from bot.db.models import AudioFeatures, Prediction, Track
from bot.service import MoodService, ServiceError
from bot.settings import Settings
from mer_models.engine import MoodEngine
from tests.fakes.audio import tone_mp3
from tests.fakes.servers import CATALOGUE, FakeDeezer
from tests.synth import SR, mood_clip


def _settings(tmp: Path, models: Path, **extra: object) -> Settings:
    values: dict[str, object] = dict(
        data_dir=tmp, models_dir=models, database_url=f"sqlite+aiosqlite:///{tmp}/mood.db",
        workers=1, source_order=["deezer"], allow_private_urls=True, http_retries=0)
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path, tiny_models_dir: Path) -> Settings:
    s = _settings(tmp_path, tiny_models_dir)
    upgrade(s.resolved_database_url())
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
    async with service.store._sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def _prediction_ids(service: MoodService) -> set[int]:
    async with service.store._sessions() as session:
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
    assert again.cached and again.provider == "cache"
    assert again.result.probabilities == moods[0].result.probabilities
    assert (again.artist, again.title) == ("Artist 0", "Song 0")


async def test_scan_is_incremental(settings: Settings, library: Path) -> None:
    (library / "notes.mp3").write_text("not audio")
    async with await MoodService.create(settings, allow_local_files=True) as service:
        first = await service.scan(library)
        assert (first.classified, first.unchanged) == (10, 0)
        assert list(first.failed) == [str(library / "notes.mp3")]
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


async def test_out_of_date_schema_is_refused(tmp_path: Path, tiny_models_dir: Path) -> None:
    fresh = _settings(tmp_path, tiny_models_dir)
    with pytest.raises(SchemaOutOfDateError, match="mer db upgrade"):
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
        configured = settings.model_copy(update={"deezer_api_base": deezer.base})
        async with await MoodService.create(configured) as service:
            mood = await service.classify(f"{song.artist} - {song.title}")
            assert (mood.title, mood.artist, mood.provider) == (song.title, song.artist,
                                                                "deezer")
            assert not mood.cached
            again = await service.classify(f"{song.artist} - {song.title}")
            assert again.cached and again.track_id == mood.track_id
            with pytest.raises(ServiceError):
                await service.classify("nothing matches this at all")


async def test_failing_source_gives_clear_message(settings: Settings) -> None:
    async with FakeDeezer() as deezer:
        deezer.fail("/search", 500, times=None)
        configured = settings.model_copy(update={"deezer_api_base": deezer.base})
        async with await MoodService.create(configured) as service:
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

        refused = await mer_run("classify", f"{song.artist} - {song.title}")
        assert refused.returncode == 1 and "mer db upgrade" in refused.stderr
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
