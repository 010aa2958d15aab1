"""Storage: migrations, schema check, SQLite pragmas, store operations, concurrency, `mer db`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

import bot.discord.models  # its tables are part of the schema
import bot.settings
from bot.cli import app
from bot.storage.engine import create_engine, make_sessionmaker
from bot.storage.errors import (
    InvalidRecordError,
    ModelConflictError,
    NotFoundError,
    SchemaOutOfDateError,
)
from bot.storage.migrate import (
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
    upgrade_async,
)
from bot.storage.models import (
    AudioFeatures,
    Base,
    Feedback,
    Track,
    TrackEvent,
    TrackSource,
    models_key,
)
from bot.storage.store import (
    FeatureRecord,
    PredictionRecord,
    Store,
    TrackRecord,
    file_fingerprint,
    normalize_isrc,
)

TABLES = {"tracks", "track_sources", "audio_features", "predictions", "feedback", "guilds",
          "queue_entries", "model_versions", "retrain_jobs", "track_events"}
MODELS = {"cldnn": "mood-4q-cldnn-1", "ensemble": "mood-4q-ensemble-1"}
WEIGHTS = {"cldnn": 0.25, "ensemble": 0.75}
KEY = models_key(MODELS, WEIGHTS)
HEAD = "0004"


def prediction(models: dict[str, str] = MODELS, *, happy: float = 0.6,
               weights: dict[str, float] | None = None) -> PredictionRecord:
    rest = round((1.0 - happy) / 3, 4)
    probabilities = {"Q1": happy, "Q2": rest, "Q3": rest, "Q4": rest}
    return PredictionRecord(
        models=models, weights=weights or {kind: WEIGHTS.get(kind, 1.0) for kind in models},
        probabilities=probabilities,
        quadrant=max(probabilities, key=probabilities.__getitem__),
        valence=happy + rest, arousal=happy + rest, confidence=max(happy, rest),
        timeline=[{"start": 0.0, "end": 5.0, "quadrant": "Q1", "probabilities": probabilities},
                  {"start": 5.0, "end": 10.0, "quadrant": "Q1",
                   "probabilities": probabilities}],
        embedding=[0.25, -1.5], elapsed_ms=12.5)


def track(n: int, **extra: object) -> TrackRecord:
    values: dict[str, object] = {"title": f"Song {n}", "artist": "Artist", "duration_s": 180.0,
                                 "provider": "deezer", "provider_id": str(1000 + n),
                                 "url": f"https://deezer.test/{n}"}
    values.update(extra)
    return TrackRecord(**values)  # type: ignore[arg-type]


def sync_url(url: str) -> str:
    return url.replace("sqlite+aiosqlite", "sqlite", 1)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A database file that does not exist yet, in a folder that does not exist either."""
    return f"sqlite+aiosqlite:///{tmp_path}/data/mood.db"


@pytest.fixture
def migrated_url(db_url: str) -> str:
    upgrade(db_url)
    return db_url


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_url)
    yield engine
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, migrated_url: str) -> AsyncIterator[Store]:
    """The store on a migrated SQLite file, then on a PostgreSQL database
    (``tests/fakes/postgres.py``)."""
    url = migrated_url
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        upgrade(url)
    engine = create_engine(url)
    yield Store(make_sessionmaker(engine))
    await engine.dispose()


# --- migrations ---------------------------------------------------------------------------


def test_upgrade_downgrade_upgrade(db_url: str, tmp_path: Path) -> None:
    assert current_revision(db_url) is None
    assert not (tmp_path / "data").exists()  # asking does not create the database
    upgrade(db_url)
    assert (tmp_path / "data" / "mood.db").is_file()
    assert current_revision(db_url) == head_revision() == HEAD
    engine = sa.create_engine(sync_url(db_url))
    try:
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) == TABLES | {"alembic_version"}
        assert {i["name"] for i in inspector.get_indexes("tracks")} == {"ix_tracks_isrc"}
        assert {i["name"] for i in inspector.get_indexes("queue_entries")} == {
            "ix_queue_entries_guild_id_queued_at", "ix_queue_entries_track_id",
            "ix_queue_entries_guild_id_state_id"}
        assert {(i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(
            "track_events")} == {("ix_track_events_scope_at", ("scope", "at")),
                                 ("ix_track_events_track_id", ("track_id",))}
        (events_fk,) = inspector.get_foreign_keys("track_events")
        assert (events_fk["referred_table"], events_fk["options"]["ondelete"]) == (
            "tracks", "CASCADE")
        unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(
            "predictions")}
        assert ("track_id", "models_key") in unique
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
        assert info.value.head == HEAD
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
        assert (info.value.current, info.value.head, info.value.known) == ("f00d", HEAD, False)
        assert "database schema is at f00d" in str(info.value)
        assert HEAD in str(info.value)
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


async def test_record_analysis_writes_everything_at_once(store: Store) -> None:
    stored = await store.record_analysis(
        track(1, isrc="us-rc1-76-07839"), prediction(),
        [FeatureRecord("descriptors", "1", {"tempo": 120.0}),
         FeatureRecord("spotify", "1", {"energy": 0.8})])
    assert stored.track.isrc == "USRC17607839" and stored.track.created_at.tzinfo == UTC
    assert stored.prediction is not None and stored.prediction.models == MODELS
    assert stored.prediction.models_key == KEY == (
        "cldnn=mood-4q-cldnn-1*0.25;ensemble=mood-4q-ensemble-1*0.75")
    assert stored.prediction.embedding == [0.25, -1.5]
    assert [f.kind for f in stored.features] == ["descriptors", "spotify"]
    found = await store.find_analysis("deezer", "1001", KEY)
    assert found is not None and found.track.id == stored.track.id
    assert found.prediction is not None and found.prediction.id == stored.prediction.id
    # Other live models, or the same models fused with other weights: the track is known,
    # its mood by them is not.
    for models, weights in (({**MODELS, "musicnn": "m-1"}, {**WEIGHTS, "musicnn": 0.5}),
                            (MODELS, {"cldnn": 0.2, "ensemble": 0.8})):
        other = await store.find_analysis("deezer", "1001", models_key(models, weights))
        assert other is not None and other.prediction is None
    assert await store.find_analysis("deezer", "nope", KEY) is None
    with pytest.raises(KeyError):  # a model without a weight has no key
        models_key(MODELS, {"cldnn": 1.0})


async def test_record_analysis_reuses_tracks_and_is_idempotent(store: Store) -> None:
    first = await store.record_analysis(track(1, isrc="USRC17607839", duration_s=None),
                                        prediction())
    again = await store.record_analysis(track(1, title="Other", album="Album",
                                              duration_s=201.5), prediction(happy=0.3))
    assert again.track.id == first.track.id
    assert (again.track.title, again.track.album, again.track.duration_s) == (
        "Song 1", "Album", 201.5)  # gaps filled, nothing overwritten
    assert again.prediction is not None and first.prediction is not None
    assert again.prediction.id == first.prediction.id and again.prediction.quadrant == "Q1"
    by_isrc = await store.record_analysis(
        track(2, provider="itunes", isrc="US-RC1-76-07839"), prediction())
    assert by_isrc.track.id == first.track.id
    assert await store.count_predictions() == 1
    newer = await store.record_analysis(track(1), prediction({"cldnn": "mood-4q-cldnn-2"}))
    assert newer.prediction is not None and newer.prediction.id != first.prediction.id
    assert await store.count_predictions() == 2
    assert normalize_isrc("not an isrc") is None


async def test_prune_keeps_only_the_live_models_predictions(store: Store) -> None:
    newer_models = {"cldnn": "mood-4q-cldnn-2", "ensemble": "mood-4q-ensemble-1"}
    newer = models_key(newer_models, WEIGHTS)
    first = await store.record_analysis(
        track(1), prediction(), [FeatureRecord("descriptors", "1", {"tempo": 90.0})])
    await store.record_analysis(track(2), prediction())
    await store.record_analysis(track(1), prediction(newer_models))
    await store.set_feedback("cli", "me", first.track.id, "Q3")
    assert await store.prediction_keys() == [(newer, 1), (KEY, 2)]  # newest first
    with pytest.raises(InvalidRecordError, match="empty"):
        await store.prune_predictions(" ")
    assert await store.prune_predictions(newer) == 2
    assert await store.prediction_keys() == [(newer, 1)]
    assert [m.track_id for m in await store.moods(newer)] == [first.track.id]
    assert await store.moods(KEY) == []
    kept = await store.find_analysis("deezer", "1002", KEY)
    assert kept is not None and kept.prediction is None  # the track stays, unclassified
    async with store.sessions() as session:
        for table in (AudioFeatures, Feedback):
            assert await session.scalar(sa.select(sa.func.count()).select_from(table)) == 1
    assert await store.prune_predictions(newer) == 0


async def test_bad_records_are_refused(store: Store) -> None:
    with pytest.raises(InvalidRecordError, match="empty provider"):
        await store.record_analysis(track(1, provider_id=""), prediction())
    with pytest.raises(InvalidRecordError, match="unknown quadrant"):
        await store.record_analysis(track(1), PredictionRecord(
            models=MODELS, weights=WEIGHTS, probabilities={}, quadrant="Q5", valence=0, arousal=0,
            confidence=0, timeline=[]))
    with pytest.raises(InvalidRecordError, match="unknown feature kind"):
        await store.record_analysis(track(1), prediction(), [FeatureRecord("mfcc", "1", {})])
    assert await store.count_predictions() == 0


async def test_a_changed_local_file_loses_its_old_analysis(store: Store, tmp_path: Path) -> None:
    audio = tmp_path / "song.wav"
    audio.write_bytes(b"RIFF....")
    local = track(1, provider="local", provider_id=str(audio), url=None,
                  fingerprint=file_fingerprint(audio))
    first = await store.record_analysis(
        local, prediction(), [FeatureRecord("descriptors", "1", {"tempo": 90.0})])
    os.utime(audio, ns=(1, 2))
    changed = TrackRecord(**{**local.__dict__, "fingerprint": file_fingerprint(audio)})
    found = await store.find_analysis("local", str(audio), KEY)
    assert found is not None and found.fingerprint == local.fingerprint != changed.fingerprint
    second = await store.record_analysis(
        changed, prediction(happy=0.3), [FeatureRecord("descriptors", "1", {"tempo": 60.0})])
    assert second.track.id == first.track.id
    assert second.prediction is not None and first.prediction is not None
    assert first.prediction.probabilities["Q1"] == 0.6
    assert second.prediction.probabilities["Q1"] == 0.3  # the old mood is gone, not kept
    assert second.features[0].values == {"tempo": 60.0}
    assert await store.count_predictions() == 1
    found = await store.find_analysis("local", str(audio), KEY)
    assert found is not None and found.fingerprint == f"{audio.stat().st_size}:2"


async def test_feedback_one_label_per_user_and_track(store: Store) -> None:
    stored = await store.record_analysis(track(1), prediction(),
                                         [FeatureRecord("spotify", "1", {"energy": 0.8})])
    track_id = stored.track.id
    first = await store.set_feedback("discord", "123456789012345678", track_id, "Q3",
                                     context="guild-1")
    second = await store.set_feedback("discord", "123456789012345678", track_id, "Q4")
    assert second.id == first.id and (second.quadrant, second.context) == ("Q4", None)
    other = await store.set_feedback("cli", "123456789012345678", track_id, "Q1")
    assert other.id != first.id  # the same id on another front-end is another user
    with pytest.raises(InvalidRecordError):
        await store.set_feedback("cli", "me", track_id, "Q5")
    with pytest.raises(NotFoundError):
        await store.set_feedback("cli", "me", 9999, "Q1")

    # Deleting the track deletes its sources, features, labels, predictions (SQLite only with
    # foreign_keys=ON).
    async with store.sessions() as session, session.begin():
        await session.execute(sa.delete(Track).where(Track.id == track_id))
    async with store.sessions() as session:
        for table in ("track_sources", "audio_features", "feedback", "predictions"):
            count = await session.scalar(sa.text(f"SELECT count(*) FROM {table}"))
            assert count == 0, table


async def test_history_recent_tracks_per_scope(store: Store) -> None:
    ids = [(await store.record_analysis(track(n), prediction())).track.id for n in range(5)]
    start = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
    minute = timedelta(minutes=1)
    await store.record_track_events("discord:1", "suggested", ids[:3], at=start)
    await store.record_track_events("discord:1", "played", [ids[0]], at=start + minute)
    await store.record_track_events("discord:1", "played", [ids[3]], at=start + 2 * minute)
    await store.record_track_events("discord:2", "played", [ids[4]], at=start + 3 * minute)
    # Most recent first, each track once at its latest event; one batch keeps its order.
    assert await store.recent_track_ids("discord:1", 10) == [ids[3], ids[0], ids[2], ids[1]]
    assert await store.recent_track_ids("discord:1", 2) == [ids[3], ids[0]]
    assert await store.recent_track_ids("discord:2", 10) == [ids[4]]
    assert await store.recent_track_ids("cli", 10) == []
    assert await store.recent_track_ids("discord:1", 0) == []
    await store.record_track_events("cli", "played", [])  # nothing to record: no error


async def test_history_refuses_bad_events(store: Store) -> None:
    first = (await store.record_analysis(track(1), prediction())).track.id
    with pytest.raises(InvalidRecordError, match="unknown history event 'skipped'"):
        await store.record_track_events("cli", "skipped", [first])
    for scope in ("", "   ", "x" * 129):
        with pytest.raises(InvalidRecordError, match="history scope"):
            await store.record_track_events(scope, "played", [first])
        with pytest.raises(InvalidRecordError, match="history scope"):
            await store.recent_track_ids(scope, 5)
    with pytest.raises(InvalidRecordError, match=">= 0"):
        await store.recent_track_ids("cli", -1)
    with pytest.raises(NotFoundError, match="track 999 does not exist"):
        await store.record_track_events("cli", "played", [first, 999])
    assert await store.recent_track_ids("cli", 5) == []  # all or nothing
    with pytest.raises(InvalidRecordError, match="naive datetime"):
        await store.record_track_events("cli", "played", [first], at=datetime(2026, 1, 1))
    await store.record_track_events("cli", "played", [first])
    async with store.sessions() as session, session.begin():  # a deleted track's history goes
        await session.execute(sa.delete(Track).where(Track.id == first))
    async with store.sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(TrackEvent)) == 0


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


async def test_concurrent_writes_neither_duplicate_nor_lock(store: Store) -> None:
    rows = await asyncio.gather(*(store.record_analysis(track(i % 10), prediction())
                                  for i in range(50)))
    assert await store.count_predictions() == 10
    by_track: dict[int, set[int]] = {}
    for row in rows:
        assert row.prediction is not None
        by_track.setdefault(row.track.id, set()).add(row.prediction.id)
    assert len(by_track) == 10 and all(len(ids) == 1 for ids in by_track.values())
    async with store.sessions() as session:
        sources = await session.scalar(sa.select(sa.func.count()).select_from(TrackSource))
        tracks = await session.scalar(sa.select(sa.func.count()).select_from(Track))
    assert (sources, tracks) == (10, 10)


# --- migration of existing data -------------------------------------------------------------


def test_0003_adds_the_history_and_takes_it_back(db_url: str) -> None:
    upgrade(db_url)
    engine = sa.create_engine(sync_url(db_url))
    try:
        downgrade(db_url, "0002")
        assert set(sa.inspect(engine).get_table_names()) == (
            TABLES - {"track_events"}) | {"alembic_version"}
        upgrade(db_url)
        assert "track_events" in sa.inspect(engine).get_table_names()
        assert current_revision(db_url) == HEAD
    finally:
        engine.dispose()


def test_0004_gives_old_queue_entries_a_state_and_takes_it_back(db_url: str) -> None:
    upgrade(db_url, "0003")
    engine = sa.create_engine(sync_url(db_url))
    now = "2026-11-20 10:00:00.000000"
    try:
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO tracks (id, title, created_at) VALUES (1, 'x', :t)"),
                      {"t": now})
            c.execute(sa.text("INSERT INTO guilds (id, settings, created_at, updated_at) "
                              "VALUES ('7', '{}', :t, :t)"), {"t": now})
            c.execute(sa.text("INSERT INTO queue_entries (guild_id, track_id, requested_by, "
                              "queued_at) VALUES ('7', 1, 'u', :t)"), {"t": now})
        upgrade(db_url)
        with engine.begin() as c:
            assert c.execute(sa.text("SELECT state, started_at FROM queue_entries")).one() == (
                "played", None)  # an old entry must not wake up as a queue
            with pytest.raises(sa.exc.IntegrityError):
                c.execute(sa.text("UPDATE queue_entries SET state = 'lost'"))
        downgrade(db_url, "0003")
        columns = {c["name"] for c in sa.inspect(engine).get_columns("queue_entries")}
        assert "state" not in columns and "requested_by" in columns
        with engine.begin() as c:
            assert c.execute(sa.text("SELECT count(*) FROM queue_entries")).scalar() == 1
    finally:
        engine.dispose()


def test_0002_converts_existing_rows_and_back(db_url: str) -> None:
    upgrade(db_url, "0001")
    engine = sa.create_engine(sync_url(db_url))
    now = "2026-11-20 10:00:00.000000"
    old_prediction = ("INSERT INTO predictions (track_id, cldnn_version, ensemble_version, "
                      "probabilities, quadrant, valence, arousal, confidence, timeline, "
                      "elapsed_ms, created_at) VALUES (1, :c, :e, '{\"Q1\": 1.0}', 'Q1', 1, 1, "
                      "1, '[]', 5.0, :t)")
    try:
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO tracks (id, title, created_at) VALUES (1, 'x', :t)"),
                      {"t": now})
            c.execute(sa.text("INSERT INTO track_sources (track_id, provider, provider_id, "
                              "served_preview, created_at) VALUES (1, 'youtube', 'abc', 0, :t)"),
                      {"t": now})
            c.execute(sa.text(old_prediction), {"c": "mood-4q-cldnn-1", "e": "", "t": now})
            c.execute(sa.text(old_prediction), {"c": "mood-4q-cldnn-1",
                                                "e": "mood-4q-ensemble-1", "t": now})
            for when, quadrant in (("2026-11-20 10:00:00", "Q3"), ("2026-11-21 10:00:00", "Q2")):
                c.execute(sa.text("INSERT INTO feedback (user_id, guild_id, track_id, quadrant, "
                                  "created_at) VALUES ('42', 'g1', 1, :q, :t)"),
                          {"q": quadrant, "t": when})
        upgrade(db_url)
        with engine.connect() as c:
            keys = c.execute(sa.text("SELECT models_key FROM predictions ORDER BY id")).scalars()
            assert list(keys) == ["cldnn=mood-4q-cldnn-1",
                                  "cldnn=mood-4q-cldnn-1;ensemble=mood-4q-ensemble-1"]
            assert c.execute(sa.text("SELECT provider FROM track_sources")).scalar() == "ytdlp"
            labels = c.execute(sa.text("SELECT frontend, user_id, context, quadrant "
                                       "FROM feedback")).all()
            assert [tuple(r) for r in labels] == [("discord", "42", "g1", "Q2")]  # the newest
        downgrade(db_url, "0001")
        with engine.connect() as c:
            versions = c.execute(sa.text("SELECT cldnn_version, ensemble_version FROM "
                                         "predictions ORDER BY id")).all()
            assert [tuple(v) for v in versions] == [("mood-4q-cldnn-1", ""), (
                "mood-4q-cldnn-1", "mood-4q-ensemble-1")]
            assert c.execute(sa.text("SELECT provider FROM track_sources")).scalar() == "youtube"
            assert c.execute(sa.text("SELECT guild_id FROM feedback")).scalar() == "g1"
    finally:
        engine.dispose()


# --- settings and CLI ---------------------------------------------------------------------


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    bot.settings.get_settings.cache_clear()
    yield
    bot.settings.get_settings.cache_clear()


def test_database_url_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MER_DATABASE_URL", raising=False)
    settings = bot.settings.Settings.load(None, data_dir=tmp_path)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/mood.db"
    assert not settings.storage.auto_upgrade
    assert settings.storage.sqlite_busy_timeout_ms == 30000
    other = bot.settings.Settings.load(
        None, storage={"database_url": "postgresql+asyncpg://u:p@h/mood"})
    assert other.database_url == "postgresql+asyncpg://u:p@h/mood"


@pytest.mark.parametrize(("given", "used"), [
    ("sqlite:////srv/mood.db", "sqlite+aiosqlite:////srv/mood.db"),
    ("sqlite+pysqlite:///mood.db", "sqlite+aiosqlite:///mood.db"),
    ("postgres://u:p@h:5432/mood", "postgresql+asyncpg://u:p@h:5432/mood"),
    ("postgresql://u:p@h/mood", "postgresql+asyncpg://u:p@h/mood"),
    ("postgresql+psycopg2://u:p@h/mood", "postgresql+asyncpg://u:p@h/mood"),
    ("postgresql+asyncpg://u:p@h/mood", "postgresql+asyncpg://u:p@h/mood"),
    ("mysql+aiomysql://u:p@h/mood", "mysql+aiomysql://u:p@h/mood"),
])
def test_a_database_url_without_an_async_driver_gets_one(given: str, used: str) -> None:
    settings = bot.settings.Settings.load(None, storage={"database_url": given})
    assert settings.database_url == used


def test_a_plain_sqlite_url_works_from_the_command_line(tmp_path: Path,
                                                        fresh_settings: None) -> None:
    # What a user types: no driver in the URL. It used to fail with "The asyncio extension
    # requires an async driver to be used".
    url = f"sqlite:///{tmp_path}/plain.db"
    result = CliRunner().invoke(app, ["db", "upgrade"], env={"MER_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert current_revision(f"sqlite+aiosqlite:///{tmp_path}/plain.db") == HEAD


def test_cli_db_commands(db_url: str, fresh_settings: None) -> None:
    runner = CliRunner()
    env = {"MER_DATABASE_URL": db_url}
    result = runner.invoke(app, ["db", "current"], env=env)
    assert result.exit_code == 0, result.output
    assert "no schema" in result.stdout
    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert f"upgraded from empty to {HEAD} (head)" in result.stdout
    assert current_revision(db_url) == HEAD
    result = runner.invoke(app, ["db", "current"], env=env)
    assert result.exit_code == 0 and result.stdout.strip().endswith(f": {HEAD} (head)")
    result = runner.invoke(app, ["db", "downgrade", "nowhere"], env=env)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "nowhere" in result.stderr
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["db", "downgrade", "base"], env=env)
    assert result.exit_code == 0, result.output
    assert current_revision(db_url) is None
