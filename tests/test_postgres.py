"""PostgreSQL (``MER_DATABASE_URL=postgres://...``) on a real, throwaway server.

The migrations, the schema they build, old rows carried through them, and the service end to
end: classify, store, look up, recommend, take feedback. The store's own tests also run on
PostgreSQL (``tests/test_storage.py``, the ``store`` fixture).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import soundfile as sf
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import bot.discord.models  # noqa: F401  (its tables are part of the schema)
from bot.service import MoodService
from bot.settings import Settings
from bot.storage.engine import create_engine
from bot.storage.migrate import current_revision, downgrade, head_revision, upgrade
from bot.storage.models import Base
from tests.fakes.postgres import PostgresServer
from tests.synth import SR, mood_clip


async def _inspect(url: str, look: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(look)
    finally:
        await engine.dispose()


async def _execute(url: str, *statements: tuple[str, dict[str, Any]]) -> list[Any]:
    engine = create_engine(url)
    try:
        results = []
        async with engine.begin() as connection:
            for sql, params in statements:
                result = await connection.execute(sa.text(sql), params)
                results.append(result.all() if result.returns_rows else None)
        return results
    finally:
        await engine.dispose()


async def test_migrations_build_the_models_schema_and_come_down(postgres_url: str) -> None:
    assert current_revision(postgres_url) is None
    upgrade(postgres_url)
    assert current_revision(postgres_url) == head_revision()

    def schema(connection: sa.Connection) -> tuple[list[Any], set[str]]:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        return diff, set(sa.inspect(connection).get_table_names())

    diff, tables = await _inspect(postgres_url, schema)
    assert diff == []  # every table, column, type, index and key as the models declare them
    assert set(Base.metadata.tables) | {"alembic_version"} == tables
    downgrade(postgres_url, "base")
    _, tables = await _inspect(postgres_url, schema)
    assert tables <= {"alembic_version"}
    upgrade(postgres_url)
    assert current_revision(postgres_url) == head_revision()


async def test_rows_of_the_first_schema_are_carried_through(postgres_url: str) -> None:
    """0002 rebuilds two tables: on PostgreSQL too, and ids keep counting after the copies."""
    upgrade(postgres_url, "0001")
    now = {"t": datetime(2026, 11, 20, 10, tzinfo=UTC)}
    old_prediction = ("INSERT INTO predictions (id, track_id, cldnn_version, ensemble_version, "
                      "probabilities, quadrant, valence, arousal, confidence, timeline, "
                      "elapsed_ms, created_at) VALUES (:id, 1, 'mood-4q-cldnn-1', :e, "
                      "'{\"Q1\": 1.0}', 'Q1', 1, 1, 1, '[]', 5.0, :t)")
    await _execute(
        postgres_url,
        ("INSERT INTO tracks (id, title, created_at) VALUES (1, 'x', :t)",
         now),
        ("INSERT INTO track_sources (track_id, provider, provider_id, served_preview, "
         "created_at) VALUES (1, 'youtube', 'abc', false, :t)", now),
        (old_prediction, {**now, "id": 1, "e": ""}),
        (old_prediction, {**now, "id": 7, "e": "mood-4q-ensemble-1"}),
        ("INSERT INTO feedback (user_id, guild_id, track_id, quadrant, created_at) VALUES "
         "('42', 'g1', 1, 'Q3', :t)", now))
    upgrade(postgres_url)
    keys, labels, _, ids = await _execute(
        postgres_url,
        ("SELECT models_key FROM predictions ORDER BY id", {}),
        ("SELECT frontend, user_id, context, quadrant FROM feedback", {}),
        ("INSERT INTO predictions (track_id, models_key, models, probabilities, quadrant, "
         "valence, arousal, confidence, timeline, elapsed_ms, created_at) VALUES (1, 'new', "
         "'{}', '{}', 'Q2', 0, 1, 1, '[]', 1.0, now())", {}),
        ("SELECT id FROM predictions ORDER BY id", {}))
    assert [k for (k,) in keys] == ["cldnn=mood-4q-cldnn-1",
                                    "cldnn=mood-4q-cldnn-1;ensemble=mood-4q-ensemble-1"]
    assert [tuple(r) for r in labels] == [("discord", "42", "g1", "Q3")]
    assert [i for (i,) in ids] == [1, 7, 8]  # the sequence continues after the copied rows
    downgrade(postgres_url, "0001")
    (versions,) = await _execute(postgres_url, ("SELECT cldnn_version, ensemble_version FROM "
                                                "predictions ORDER BY id", {}))
    assert ("mood-4q-cldnn-1", "mood-4q-ensemble-1") in [tuple(v) for v in versions]


async def test_the_service_on_postgres(postgres_server: PostgresServer, tmp_path: Path,
                                       tiny_models_dir: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    for i in range(8):
        sf.write(library / f"Artist {i} - Song {i}.wav",
                 mood_clip(f"Q{i % 4 + 1}", seconds=6.0, seed=300 + i), SR)
    # A plain postgres:// URL, as users write it: the settings give it the asyncio driver.
    url = postgres_server.url(postgres_server.create_database(), driver="").replace(
        "postgresql://", "postgres://", 1)
    settings = Settings.load(None, data_dir=tmp_path, engine={"models_dir": tiny_models_dir,
                                                              "workers": 1},
                             storage={"database_url": url, "auto_upgrade": True})
    assert settings.database_url.startswith("postgresql+asyncpg://")
    async with await MoodService.create(settings, allow_local_files=True) as service:
        first = await service.scan(library)
        assert (first.classified, first.unchanged) == (8, 0)
        again = await service.scan(library)
        assert (again.classified, again.unchanged) == (0, 8)
        mood = await service.classify(str(library / "Artist 0 - Song 0.wav"))
        assert mood.cached and mood.result.timings_ms  # stored JSON and timestamps read back
        assert len(await service.recommendations.library()) == 8
        picks = await service.recommendations.recommend(mood.result.quadrant.mood, 3)
        assert 1 <= len(picks) <= 3
        await service.store.set_feedback("cli", "me", mood.track_id, "Q3")
        assert await service.store.count_predictions() == 8


def test_mer_db_upgrade_with_a_postgres_url(postgres_server: PostgresServer,
                                            tmp_path: Path) -> None:
    database = postgres_server.create_database()
    env = {**os.environ, "MER_DATA_DIR": str(tmp_path),
           "MER_DATABASE_URL": postgres_server.url(database, driver="")}
    mer = Path(sys.executable).parent / "mer"
    done = subprocess.run([str(mer), "db", "upgrade"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert current_revision(postgres_server.url(database)) == head_revision()
