"""Storage: migrations, schema check, SQLite pragmas, store operations, concurrency, `mer db`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

import bot.settings
from bot.cli import app
from bot.db import (
    Base,
    InvalidRecordError,
    ModelConflictError,
    NotFoundError,
    Prediction,
    SchemaOutOfDateError,
    Store,
    Track,
    TrackSource,
    check_schema,
    create_engine,
    current_revision,
    default_database_url,
    downgrade,
    head_revision,
    make_sessionmaker,
    upgrade,
    upgrade_async,
)
from bot.db.store import file_fingerprint, normalize_isrc
from mer_models.result import MoodResult

TABLES = {"tracks", "track_sources", "audio_features", "predictions", "feedback", "guilds",
          "queue_entries", "model_versions", "retrain_jobs"}
MODELS: dict[str, str | None] = {"cldnn": "mood-4q-cldnn-1", "ensemble": "mood-4q-ensemble-1"}


def mood_result(models: dict[str, str | None], *, happy: float = 0.6) -> MoodResult:
    rest = (1.0 - happy) / 3
    rows = np.array([[happy, rest, rest, rest], [happy - 0.1, rest + 0.1, rest, rest]])
    return MoodResult.from_arrays(input="clip.wav", window_probabilities=rows,
                                  starts=np.array([0.0, 5.0]), window_seconds=5.0,
                                  models=models, timings_ms={"total": 12.5}, duration=10.0)


def sync_url(url: str) -> str:
    return url.replace("sqlite+aiosqlite", "sqlite", 1)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A database file that does not exist yet, in a folder that does not exist either."""
    return default_database_url(tmp_path / "data")


@pytest.fixture
def migrated_url(db_url: str) -> str:
    upgrade(db_url)
    return db_url


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> Store:
    return Store(make_sessionmaker(engine))


async def new_track(store: Store, n: int) -> Track:
    return await store.upsert_track(f"Song {n}", "Artist", None, 180.0, None, "deezer",
                                    str(1000 + n), f"https://deezer.test/{n}")


# --- migrations ---------------------------------------------------------------------------


def test_upgrade_downgrade_upgrade(db_url: str, tmp_path: Path) -> None:
    assert current_revision(db_url) is None
    assert not (tmp_path / "data").exists()  # asking does not create the database
    upgrade(db_url)
    assert (tmp_path / "data" / "mood.db").is_file()
    assert current_revision(db_url) == head_revision() == "0001"
    engine = sa.create_engine(sync_url(db_url))
    try:
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) == TABLES | {"alembic_version"}
        assert {i["name"] for i in inspector.get_indexes("tracks")} == {"ix_tracks_isrc"}
        assert {i["name"] for i in inspector.get_indexes("queue_entries")} == {
            "ix_queue_entries_guild_id_queued_at", "ix_queue_entries_track_id"}
        unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(
            "predictions")}
        assert ("track_id", "cldnn_version", "ensemble_version") in unique
        assert {tuple(u["column_names"]) for u in inspector.get_unique_constraints(
            "track_sources")} == {("provider", "provider_id")}
        fks = inspector.get_foreign_keys("track_sources")
        assert fks[0]["referred_table"] == "tracks"
        assert fks[0]["options"]["ondelete"] == "CASCADE"

        downgrade(db_url, "base")
        assert current_revision(db_url) is None
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) <= {"alembic_version"}

        upgrade(db_url)
        assert set(sa.inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    finally:
        engine.dispose()


def test_migrations_match_the_models(migrated_url: str) -> None:
    engine = sa.create_engine(sync_url(migrated_url))
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


async def test_check_schema_refuses_until_upgraded(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with pytest.raises(SchemaOutOfDateError, match="run `mer db upgrade`") as info:
            await check_schema(engine)
        assert info.value.current is None
        assert info.value.head == "0001"
        upgrade(db_url)  # sync API from inside a running loop
        await check_schema(engine)
    finally:
        await engine.dispose()


async def test_check_schema_names_both_revisions_and_auto_upgrade(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await upgrade_async(engine)
        await check_schema(engine)
        async with engine.begin() as connection:
            await connection.execute(sa.text("UPDATE alembic_version SET version_num = 'f00d'"))
        with pytest.raises(SchemaOutOfDateError) as info:
            await check_schema(engine)
        assert (info.value.current, info.value.head, info.value.known) == ("f00d", "0001", False)
        assert "database schema is at f00d" in str(info.value)
        assert "0001" in str(info.value)
    finally:
        await engine.dispose()


async def test_sqlite_pragmas(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        async def pragma(name: str) -> object:
            return (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()

        assert await pragma("journal_mode") == "wal"
        assert await pragma("foreign_keys") == 1
        assert await pragma("busy_timeout") == 30000
        assert await pragma("synchronous") == 1  # NORMAL


# --- store --------------------------------------------------------------------------------


async def test_upsert_track_reuses_by_source_and_isrc(store: Store) -> None:
    first = await store.upsert_track("Song", "Artist", None, None, "us-rc1-76-07839",
                                     "spotify", "sp1", "https://open.spotify.test/sp1")
    assert first.isrc == "USRC17607839"
    assert first.created_at.tzinfo == UTC
    again = await store.upsert_track("Song (remaster)", "Artist", "Album", 201.5, None,
                                     "spotify", "sp1", "https://open.spotify.test/sp1")
    assert again.id == first.id
    assert (again.title, again.album, again.duration_s) == ("Song", "Album", 201.5)  # gaps
    by_isrc = await store.upsert_track("Song", "Artist", None, None, "USRC17607839",
                                       "deezer", "dz1", None)
    assert by_isrc.id == first.id
    other = await store.upsert_track("Song", "Artist", None, None, None, "youtube", "yt1", None)
    assert other.id != first.id
    found = await store.find_track_by_source("deezer", "dz1")
    assert found is not None and found.id == first.id
    assert await store.find_track_by_source("deezer", "nope") is None
    with pytest.raises(InvalidRecordError, match="unknown provider"):
        await store.upsert_track("Song", None, None, None, None, "napster", "1", None)
    assert normalize_isrc("not an isrc") is None


async def test_local_files_keep_their_fingerprint(store: Store, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    audio = tmp_path / "song.wav"
    audio.write_bytes(b"RIFF....")
    monkeypatch.chdir(tmp_path)
    assert await store.local_fingerprint("song.wav") is None
    track = await store.upsert_track("song", None, None, None, None, "local", "song.wav",
                                     None, file_fingerprint(audio))
    assert await store.local_fingerprint(str(audio)) == file_fingerprint(audio)
    os.utime(audio, ns=(1, 2))
    same = await store.upsert_track("song", None, None, None, None, "local", str(audio), None,
                                    file_fingerprint(audio))
    assert same.id == track.id
    assert await store.local_fingerprint(audio) == f"{audio.stat().st_size}:2"


async def test_save_prediction_is_idempotent(store: Store) -> None:
    track = await new_track(store, 1)
    saved = await store.save_prediction(track.id, mood_result(MODELS))
    again = await store.save_prediction(track.id, mood_result(MODELS, happy=0.3))
    assert again.id == saved.id and again.quadrant == "Q1"
    assert await store.count_predictions() == 1
    assert saved.models == MODELS
    assert saved.probabilities["Q1"] == pytest.approx(0.55)
    assert [w["start"] for w in saved.timeline] == [0.0, 5.0]
    assert saved.elapsed_ms == 12.5 and saved.created_at.tzinfo == UTC

    # A missing model is stored as '' so that the unique constraint still applies.
    cldnn_only = {"cldnn": "mood-4q-cldnn-1", "ensemble": None}
    partial = await store.save_prediction(track.id, mood_result(cldnn_only))
    assert partial.id != saved.id and partial.ensemble_version == ""
    assert (await store.save_prediction(track.id, mood_result(cldnn_only))).id == partial.id
    fetched = await store.get_prediction(track.id, "mood-4q-cldnn-1", None)
    assert fetched is not None and fetched.id == partial.id and fetched.models == cldnn_only
    assert await store.count_predictions() == 2
    with pytest.raises(NotFoundError):
        await store.save_prediction(9999, mood_result(MODELS))


async def test_unique_constraint_with_missing_model_versions(engine: AsyncEngine,
                                                             store: Store) -> None:
    track = await new_track(store, 1)
    row = {"track_id": track.id, "probabilities": {"Q1": 1.0}, "quadrant": "Q1",
           "valence": 1.0, "arousal": 1.0, "confidence": 1.0, "timeline": [],
           "elapsed_ms": 1.0}
    sessions = make_sessionmaker(engine)
    async with sessions() as session, session.begin():
        session.add(Prediction(**row))  # both versions default to ''
    with pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            session.add(Prediction(**row, cldnn_version="", ensemble_version=""))


async def test_features_feedback_and_cascade(engine: AsyncEngine, store: Store) -> None:
    track = await new_track(store, 1)
    features = await store.save_features(track.id, "spotify", "v1", {"energy": 0.8})
    again = await store.save_features(track.id, "spotify", "v1", {"energy": 0.1})
    assert again.id == features.id and again.values == {"energy": 0.8}
    with pytest.raises(InvalidRecordError):
        await store.save_features(track.id, "mfcc", "v1", {})
    feedback = await store.add_feedback(123456789012345678, None, track.id, "Q3")
    assert (feedback.user_id, feedback.guild_id, feedback.quadrant) == (
        "123456789012345678", None, "Q3")
    with pytest.raises(InvalidRecordError):
        await store.add_feedback("1", "2", track.id, "Q5")
    with pytest.raises(NotFoundError):
        await store.add_feedback("1", "2", 9999, "Q1")
    await store.save_prediction(track.id, mood_result(MODELS))

    # foreign_keys=ON: deleting the track deletes its sources, features, labels, predictions.
    async with make_sessionmaker(engine)() as session, session.begin():
        await session.execute(sa.delete(Track).where(Track.id == track.id))
    async with make_sessionmaker(engine)() as session:
        for table in ("track_sources", "audio_features", "feedback", "predictions"):
            count = await session.scalar(sa.text(f"SELECT count(*) FROM {table}"))
            assert count == 0, table


async def test_model_registry(store: Store) -> None:
    first = await store.register_model("mood-4q-cldnn", "1", "cldnn", "a" * 64,
                                       {"f1": 0.7}, live=True)
    await store.register_model("mood-4q-ensemble", "1", "ensemble", "b" * 64, {}, live=True)
    second = await store.register_model("mood-4q-cldnn", "2", "cldnn", "c" * 64,
                                        {"f1": 0.75}, live=True)
    live = await store.live_models()
    assert [(m.kind, m.version) for m in live] == [("cldnn", "2"), ("ensemble", "1")]
    assert second.id != first.id
    updated = await store.register_model("mood-4q-cldnn", "1", "cldnn", "a" * 64,
                                         {"f1": 0.71}, live=False)
    assert updated.id == first.id and updated.metrics == {"f1": 0.71}
    with pytest.raises(ModelConflictError, match="another version"):
        await store.register_model("mood-4q-cldnn", "1", "cldnn", "d" * 64, {}, live=False)


# --- concurrency ----------------------------------------------------------------------------


async def test_concurrent_writes_neither_duplicate_nor_lock(engine: AsyncEngine,
                                                            store: Store) -> None:
    tracks = [await new_track(store, n) for n in range(10)]
    rows = await asyncio.gather(*(store.save_prediction(tracks[i % 10].id, mood_result(MODELS))
                                  for i in range(50)))
    assert await store.count_predictions() == 10
    for track in tracks:
        assert len({r.id for r in rows if r.track_id == track.id}) == 1

    same = await asyncio.gather(*(store.upsert_track("Race", None, None, None, None, "url",
                                                     "https://race.test/a", None)
                                  for _ in range(20)))
    assert len({t.id for t in same}) == 1
    async with make_sessionmaker(engine)() as session:
        sources = await session.scalar(sa.select(sa.func.count()).select_from(TrackSource)
                                       .where(TrackSource.provider == "url"))
    assert sources == 1


# --- settings and CLI ---------------------------------------------------------------------


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    bot.settings.get_settings.cache_clear()
    yield
    bot.settings.get_settings.cache_clear()


def test_database_url_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MER_DATABASE_URL", raising=False)
    settings = bot.settings.Settings(data_dir=tmp_path)
    assert settings.resolved_database_url() == f"sqlite+aiosqlite:///{tmp_path}/mood.db"
    assert not settings.auto_upgrade and settings.sqlite_busy_timeout_ms == 30000
    other = bot.settings.Settings(database_url="postgresql+asyncpg://u:p@h/mood")
    assert other.resolved_database_url() == "postgresql+asyncpg://u:p@h/mood"


def test_cli_db_commands(db_url: str, fresh_settings: None) -> None:
    runner = CliRunner()
    env = {"MER_DATABASE_URL": db_url}
    result = runner.invoke(app, ["db", "current"], env=env)
    assert result.exit_code == 0, result.output
    assert "no schema" in result.stdout
    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert "upgraded from empty to 0001 (head)" in result.stdout
    assert current_revision(db_url) == "0001"
    result = runner.invoke(app, ["db", "current"], env=env)
    assert result.exit_code == 0 and result.stdout.strip().endswith(": 0001 (head)")
    result = runner.invoke(app, ["db", "downgrade", "nowhere"], env=env)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "nowhere" in result.stderr
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["db", "downgrade", "base"], env=env)
    assert result.exit_code == 0, result.output
    assert current_revision(db_url) is None
