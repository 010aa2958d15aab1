"""Users' answers exported as training labels: :mod:`bot.service.feedback`, on a real service
over a SQLite copy of the small stored library of :mod:`tests.fakes.moodlib`."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.service import MoodService, ServiceError
from bot.service.feedback import (
    COLUMNS,
    escape_cell,
    export_feedback,
    unescape_cell,
    voted_quadrant,
)
from bot.service.tracks import StoredTracks
from bot.sources.errors import NoPreviewError
from bot.sources.models import Preview, TrackInfo
from bot.storage.models import Feedback
from bot.storage.store import PredictionRecord, TrackRecord
from tests.fakes.discord_fixtures import (  # noqa: F401  (SQLite and PostgreSQL)
    service_on_both_backends,
)
from tests.fakes.moodlib import VERSIONS, WEIGHTS

#: Discord snowflakes and a guild id that must never appear in an export.
ALICE, BOB, CAROL = "111111111111111111", "222222222222222222", "333333333333333333"
GUILD = "999999999999999999"


def parse(data: bytes) -> tuple[list[str], dict[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    rows = {int(r["track_id"]): r for r in reader}
    return list(reader.fieldnames or ()), rows


async def answer(service: MoodService, track_id: int, mood: str, user: str,
                 frontend: str = "discord") -> None:
    await StoredTracks(service).feedback(track_id, mood, frontend=frontend, user_id=user,
                                         context=GUILD)


async def add_track(service: MoodService, title: str, *, artist: str = "Someone",
                    path: Path | None = None, quadrant: str = "Q1") -> int:
    """Store a classified track: a local file at ``path``, else a Deezer track."""
    local = path is not None
    record = TrackRecord(title=title, artist=artist, provider="local" if local else "deezer",
                         provider_id=str(path) if local else f"dz-{title}",
                         url=None if local else f"https://www.deezer.com/track/{len(title)}")
    probabilities = {q: 0.7 if q == quadrant else 0.1 for q in ("Q1", "Q2", "Q3", "Q4")}
    prediction = PredictionRecord(models=dict(VERSIONS), weights=dict(WEIGHTS),
                                  probabilities=probabilities,
                                  quadrant=quadrant, valence=0.5, arousal=0.5, confidence=0.7,
                                  timeline=[])
    return (await service.store.record_analysis(record, prediction)).track.id


async def test_one_row_per_track_with_votes_and_no_user_ids(service: MoodService) -> None:
    # Track 1 (Sunny Day, Q1 by the models): two users say happy, one says sad.
    await answer(service, 1, "happy", ALICE)
    await answer(service, 1, "Q1", BOB)
    await answer(service, 1, "sad", CAROL)
    # Track 3 (Storm Warning, Q2): Alice says tense, then changes her mind to calm; Bob says
    # sad: one answer each (a tie), Alice's answer replaced hers, so calm is the newer one.
    await answer(service, 3, "tense", ALICE)
    await answer(service, 3, "sad", BOB)
    await answer(service, 3, "calm", ALICE)
    # The same id on another front-end is another user.
    await answer(service, 2, "calm", ALICE, frontend="cli")

    export = await export_feedback(service)
    header, rows = parse(export.data)
    assert header == list(COLUMNS)
    assert sorted(rows) == [1, 2, 3]
    one, two, three = rows[1], rows[2], rows[3]
    assert (one["title"], one["artist"], one["quadrant"], one["predicted"]) == (
        "Sunny Day", "The Brights", "Q1", "Q1")
    assert [one[f"votes_q{i}"] for i in range(1, 5)] == ["2", "0", "1", "0"]
    assert one["users"] == "3"
    # Alice's first answer (Q2) is gone; the tie Q3-Q4 goes to the latest answer (Q4).
    assert [three[f"votes_q{i}"] for i in range(1, 5)] == ["0", "0", "1", "1"]
    assert (three["quadrant"], three["users"], three["predicted"]) == ("Q4", "2", "Q2")
    assert (two["quadrant"], two["users"]) == ("Q4", "1")
    assert datetime.fromisoformat(one["last_answer_at"]).tzinfo is not None
    assert (export.tracks, export.rows, export.votes, export.users) == (3, 3, 6, 4)
    assert re.fullmatch(r"mood-feedback-\d{8}\.csv", export.filename)
    assert export.summary() == "3 tracks, 6 answers from 4 users; audio for 0"
    text = export.data.decode("utf-8")
    for secret in (ALICE, BOB, CAROL, GUILD, "discord", "cli"):
        assert secret not in text


async def test_audio_path_and_source_url(service: MoodService, tmp_path: Path) -> None:
    audio = tmp_path / "Song.mp3"
    audio.write_bytes(b"ID3 not really audio")
    here = await add_track(service, "Here", path=audio)
    gone = await add_track(service, "Gone", path=tmp_path / "deleted.mp3")
    for track_id in (here, gone, 2):  # 2: Happy Hour, a Deezer track
        await answer(service, track_id, "Q2", ALICE)
    _, rows = parse((await export_feedback(service)).data)
    assert (rows[here]["audio_path"], rows[here]["source_url"]) == (str(audio), "")
    assert rows[gone]["audio_path"] == ""
    assert rows[2]["audio_path"] == ""  # a catalogue track: not fetched unless asked
    assert rows[2]["source_url"].startswith("https://www.deezer.com/track/")


class PreviewResolver:
    """Serves previews from files in a folder; a URL ending in 0 has none."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.queries: list[str] = []

    async def resolve(self, query: str) -> Preview:
        self.queries.append(query)
        if query.endswith("0"):
            raise NoPreviewError("deezer", f"no preview for {query}", reasons={})
        path = self.folder / f"{len(self.queries)}.mp3"
        path.write_bytes(b"preview")
        info = TrackInfo(title="x", artist="y", provider="deezer", provider_id="1", url=query)
        return Preview(track=info, path=path, provider="deezer", sha256="0" * 64)

    async def aclose(self) -> None:
        return None


async def test_fetch_audio_fills_catalogue_tracks(service: MoodService, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = PreviewResolver(tmp_path)
    monkeypatch.setattr(service, "resolver", resolver)
    audio = tmp_path / "local.mp3"
    audio.write_bytes(b"local")
    local = await add_track(service, "Local", path=audio)
    missing = await add_track(service, "TenCharsXY")  # URL ends in 0: no preview
    for track_id in (2, local, missing):
        await answer(service, track_id, "Q1", BOB)
    export = await export_feedback(service, fetch_audio=True)
    _, rows = parse(export.data)
    assert Path(rows[2]["audio_path"]).read_bytes() == b"preview"
    assert rows[local]["audio_path"] == str(audio)  # the local file, nothing fetched for it
    assert rows[missing]["audio_path"] == ""
    assert len(resolver.queries) == 2 and export.with_audio == 2


@pytest.mark.parametrize(("text", "escaped"), [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("+1", "'+1"), ("-5 dB", "'-5 dB"), ("@SUM(A1)", "'@SUM(A1)"), ("\tTab", "'\tTab"),
    ("'=already", "''=already"),
    ("'Round Midnight", "'Round Midnight"), ("Plain", "Plain"), ("", ""), ("a=b", "a=b"),
])
def test_formula_cells_are_escaped_reversibly(text: str, escaped: str) -> None:
    assert escape_cell(text) == escaped
    assert unescape_cell(escaped) == text


async def test_formula_titles_are_escaped_in_the_csv(service: MoodService) -> None:
    evil = await add_track(service, "=cmd|'/C calc'!A0", artist="@attacker")
    await answer(service, evil, "Q1", ALICE)
    _, rows = parse((await export_feedback(service)).data)
    assert (rows[evil]["title"], rows[evil]["artist"]) == ("'=cmd|'/C calc'!A0", "'@attacker")


async def test_empty_export_has_the_header_only(service: MoodService) -> None:
    export = await export_feedback(service)
    assert export.data.decode("utf-8") == ",".join(COLUMNS) + "\r\n"
    assert (export.tracks, export.votes, export.users, export.with_audio) == (0, 0, 0, 0)
    assert export.summary() == "0 tracks, 0 answers from 0 users; audio for 0"


async def test_since_counts_only_recent_answers(service: MoodService) -> None:
    await answer(service, 1, "Q1", ALICE)
    await answer(service, 1, "Q3", BOB)
    await answer(service, 4, "Q2", BOB)
    cut = datetime.now(UTC) - timedelta(days=1)
    async with service.store.sessions() as session, session.begin():  # Alice answered long ago
        await session.execute(sa.update(Feedback).where(Feedback.user_id == ALICE)
                              .values(created_at=cut - timedelta(days=1)))
    export = await export_feedback(service, since=cut)
    _, rows = parse(export.data)
    assert sorted(rows) == [1, 4] and rows[1]["quadrant"] == "Q3" and rows[1]["users"] == "1"
    assert (export.votes, export.users) == (2, 1)
    assert (await export_feedback(service, since=datetime.now(UTC) + timedelta(1))).tracks == 0
    with pytest.raises(ServiceError, match="naive"):
        await export_feedback(service, since=datetime(2026, 1, 1))


def test_ties_go_to_the_latest_answer_then_the_lower_quadrant() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = t0 + timedelta(seconds=1)
    assert voted_quadrant({"Q1": 2, "Q3": 1}, {"Q1": t0, "Q3": t1}) == "Q1"
    assert voted_quadrant({"Q1": 1, "Q3": 1}, {"Q1": t0, "Q3": t1}) == "Q3"
    assert voted_quadrant({"Q2": 1, "Q4": 1}, {"Q2": t1, "Q4": t1}) == "Q2"


async def test_concurrent_answers_of_one_user_leave_one_row(service: MoodService) -> None:
    """The store keeps one answer per user and track even when answers race (a user
    clicking fast): the losers of the insert race update the winner's row."""
    moods = ["Q1", "Q2", "Q3", "Q4", "Q1", "Q2"]
    await asyncio.gather(*(answer(service, 5, mood, CAROL) for mood in moods))
    async with service.store.sessions() as session:
        stored: list[Any] = list((await session.execute(
            sa.select(Feedback.quadrant).where(Feedback.track_id == 5))).all())
    assert len(stored) == 1 and stored[0][0] in moods
    _, rows = parse((await export_feedback(service)).data)
    assert rows[5]["users"] == "1"
