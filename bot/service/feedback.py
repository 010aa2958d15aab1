"""Users' mood answers as a CSV of extra training labels (``/mood-admin feedback-export``).

Each user keeps one answer per track (a new one replaces the old, see
:meth:`bot.storage.store.Store.set_feedback`); the export has one row per track that has
answers, with the counts per quadrant and never who answered. ``python -m train <stage>
--feedback FILE.csv`` (:mod:`train.feedback`) reads it back.

Columns, in this order (a plain header row; UTF-8, comma-separated, ``\\r\\n`` line ends):

==================  ===========================================================================
``track_id``        The track's id in this bot's database.
``title``           Its title (spreadsheet-escaped, see below).
``artist``          Its artist, may be empty (spreadsheet-escaped).
``isrc``            Its 12-character ISRC, or empty.
``quadrant``        The voted label ``Q1`` .. ``Q4``: the quadrant with the most current answers;
                    a tie goes to the tied quadrant answered most recently.
``votes_q1`` ..     Current answers per quadrant (one per user).
``votes_q4``
``users``           Users who answered (the sum of the four counts).
``predicted``       The live models' quadrant for the track at export time, or empty when they
                    have not classified it.
``audio_path``      A readable audio file of the track on the exporting machine: the local file
                    of a library track; with ``fetch_audio`` a catalogue track's preview,
                    fetched into the audio cache; else empty.
``source_url``      The catalogue page of the track (Deezer, iTunes, ...), credentials
                    redacted, or empty for a library-only track.
``last_answer_at``  When the most recent counted answer was given (ISO 8601, UTC).
==================  ===========================================================================

Titles and artists that a spreadsheet would run as a formula (starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return, possibly behind apostrophes) get one leading
apostrophe; :func:`unescape_cell` (and the training reader) removes it again.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from bot.service.errors import ServiceError, redact
from bot.sources.errors import SourceError
from bot.sources.models import Provider
from bot.storage.models import (
    QUADRANT_VALUES,
    Feedback,
    Prediction,
    Track,
    TrackSource,
    utcnow,
)

if TYPE_CHECKING:
    from bot.service.mood import MoodService

logger = logging.getLogger(__name__)

#: The header row of the export (the schema of the module docstring).
COLUMNS: Final[tuple[str, ...]] = (
    "track_id", "title", "artist", "isrc", "quadrant",
    *(f"votes_{q.lower()}" for q in QUADRANT_VALUES),
    "users", "predicted", "audio_path", "source_url", "last_answer_at")
#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_START: Final[tuple[str, ...]] = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class FeedbackExport:
    """A feedback export, ready to attach.

    Attributes
    ----------
    data : bytes
        The CSV file (UTF-8).
    filename : str
        ``mood-feedback-YYYYMMDD.csv`` (the UTC date of the export).
    tracks : int
        Tracks with answers: the data rows of the CSV.
    votes : int
        Answers counted (one per user and track).
    users : int
        Distinct users who gave them (user ids are not exported).
    with_audio : int
        Rows whose ``audio_path`` is set (what training can use).
    """

    data: bytes
    filename: str
    tracks: int
    votes: int
    users: int
    with_audio: int

    @property
    def rows(self) -> int:
        """Data rows of the CSV (one per track)."""
        return self.tracks

    def summary(self) -> str:
        """One line for the admin: ``"12 tracks, 30 answers from 5 users; audio for 10"``."""
        return (f"{self.tracks} track{'s' * (self.tracks != 1)}, {self.votes} "
                f"answer{'s' * (self.votes != 1)} from {self.users} "
                f"user{'s' * (self.users != 1)}; audio for {self.with_audio}")


def escape_cell(text: str) -> str:
    """``text`` safe to open in a spreadsheet: a formula-like cell gets a leading apostrophe.

    Reversible with :func:`unescape_cell`, also for text that already starts with
    apostrophes.
    """
    return f"'{text}" if text.lstrip("'").startswith(FORMULA_START) else text


def unescape_cell(text: str) -> str:
    """The text that :func:`escape_cell` escaped."""
    escaped = text.startswith("'") and text.lstrip("'").startswith(FORMULA_START)
    return text[1:] if escaped else text


def voted_quadrant(votes: Mapping[str, int], latest: Mapping[str, datetime]) -> str:
    """The quadrant with the most votes; a tie goes to the one answered most recently
    (then to the lower quadrant).

    Parameters
    ----------
    votes : mapping
        ``{quadrant: answers}``, at least one positive.
    latest : mapping
        ``{quadrant: time of its most recent answer}`` for the quadrants with answers.
    """
    most = max(votes.values())
    tied = [q for q in QUADRANT_VALUES if votes.get(q, 0) == most]
    return max(tied, key=lambda q: (latest[q], -QUADRANT_VALUES.index(q)))


@dataclass
class _Row:
    track_id: int
    votes: dict[str, int]
    latest: dict[str, datetime]
    title: str = ""
    artist: str = ""
    isrc: str = ""
    predicted: str = ""
    audio_path: str = ""
    #: The first catalogue source's URL as stored (fetched with ``fetch_audio``).
    catalogue_url: str | None = None


async def export_feedback(service: MoodService, *, since: datetime | None = None,
                          fetch_audio: bool = False, concurrency: int = 4) -> FeedbackExport:
    """Every track's current answers as a CSV of training labels (no user ids).

    Parameters
    ----------
    service : MoodService
        Whose database (its live models give ``predicted``).
    since : datetime, optional
        Count only answers given at or after this time (timezone-aware); default all.
    fetch_audio : bool
        Fetch the preview of every track without a local file through the service's
        resolver (network; the files land in the audio cache), so that ``audio_path`` is
        set for catalogue tracks too. Failures leave it empty and are logged.
    concurrency : int
        Previews fetched at once with ``fetch_audio``.

    Returns
    -------
    FeedbackExport
        The CSV and its counts; a CSV with the header only when nothing was answered.

    Raises
    ------
    ServiceError
        ``since`` is naive, or the database cannot be read.
    """
    if since is not None and since.utcoffset() is None:
        raise ServiceError(f"naive datetime {since.isoformat()}: give a timezone-aware one")
    try:
        rows, users, sources = await _read(service, since)
    except SQLAlchemyError as exc:
        raise ServiceError(f"could not read the feedback: {exc}") from exc
    await _find_audio(service, rows, sources, fetch_audio=fetch_audio,
                      concurrency=max(1, concurrency))
    export = FeedbackExport(
        data=_csv(rows), filename=f"mood-feedback-{utcnow():%Y%m%d}.csv", tracks=len(rows),
        votes=sum(sum(r.votes.values()) for r in rows), users=users,
        with_audio=sum(bool(r.audio_path) for r in rows))
    logger.info("feedback export: %s", export.summary())
    return export


_Sources = dict[int, list[tuple[str, str, str | None]]]


async def _read(service: MoodService, since: datetime | None
                ) -> tuple[list[_Row], int, _Sources]:
    """Votes per track and quadrant, the number of users, tags, predictions and sources."""
    where = [] if since is None else [Feedback.created_at >= since]
    answered = select(Feedback.track_id).where(*where)
    async with service.store.sessions() as session:
        votes = (await session.execute(
            select(Feedback.track_id, Feedback.quadrant, func.count(),
                   func.max(Feedback.created_at))
            .where(*where).group_by(Feedback.track_id, Feedback.quadrant))).all()
        users = await session.scalar(select(func.count()).select_from(
            select(Feedback.frontend, Feedback.user_id).where(*where).distinct().subquery()))
        tracks = (await session.execute(
            select(Track.id, Track.title, Track.artist, Track.isrc)
            .where(Track.id.in_(answered)))).all()
        predictions = (await session.execute(
            select(Prediction.track_id, Prediction.quadrant)
            .where(Prediction.models_key == service.models_key,
                   Prediction.track_id.in_(answered)))).all()
        source_rows = (await session.execute(
            select(TrackSource.track_id, TrackSource.provider, TrackSource.provider_id,
                   TrackSource.url)
            .where(TrackSource.track_id.in_(answered))
            .order_by(TrackSource.track_id, TrackSource.provider != Provider.LOCAL.value,
                      TrackSource.id))).all()
    by_track: dict[int, _Row] = {}
    for track_id, quadrant, count, latest in votes:
        row = by_track.setdefault(track_id, _Row(track_id, {}, {}))
        row.votes[quadrant] = int(count)
        row.latest[quadrant] = latest
    for track_id, title, artist, isrc in tracks:
        if track_id in by_track:
            row = by_track[track_id]
            row.title, row.artist, row.isrc = title, artist or "", isrc or ""
    for track_id, quadrant in predictions:
        if track_id in by_track:
            by_track[track_id].predicted = quadrant
    sources: _Sources = defaultdict(list)
    for track_id, provider, provider_id, url in source_rows:
        sources[track_id].append((provider, provider_id, url))
    for track_id, row in by_track.items():
        row.catalogue_url = next((u for p, _, u in sources[track_id]
                                  if p != Provider.LOCAL.value and u), None)
    return [by_track[t] for t in sorted(by_track)], int(users or 0), sources


async def _find_audio(service: MoodService, rows: list[_Row], sources: _Sources, *,
                      fetch_audio: bool, concurrency: int) -> None:
    """Set ``audio_path``: a local file that exists, else (when asked) a fetched preview."""
    local = {r.track_id: [pid for p, pid, _ in sources[r.track_id] if p == Provider.LOCAL.value]
             for r in rows}
    found = await asyncio.to_thread(_first_files, local)
    for row in rows:
        row.audio_path = found.get(row.track_id, "")
    if not fetch_audio:
        return
    wanted = [(r, r.catalogue_url) for r in rows if not r.audio_path and r.catalogue_url]
    limit = asyncio.Semaphore(concurrency)

    async def fetch(row: _Row, url: str) -> None:
        async with limit:
            try:
                preview = await service.resolver.resolve(url)
            except (SourceError, OSError) as exc:
                reason = getattr(exc, "reason", None) or str(exc)
                logger.info("feedback export: no preview for track %d: %s", row.track_id,
                            reason)
                return
            row.audio_path = str(preview.path)

    await asyncio.gather(*(fetch(row, url) for row, url in wanted))
    # A small audio cache may have evicted early previews while later ones arrived.
    fetched = {r.track_id: [r.audio_path] for r, _ in wanted if r.audio_path}
    still = await asyncio.to_thread(_first_files, fetched)
    for row, _ in wanted:
        if row.audio_path and row.track_id not in still:
            logger.warning("feedback export: the preview of track %d left the audio cache "
                           "during the export (raise sources.audio_cache_mb)", row.track_id)
            row.audio_path = ""


def _first_files(candidates: Mapping[int, Iterable[str]]) -> dict[int, str]:
    """``{track_id: the first candidate path that is a readable file}`` (blocking)."""
    found = {}
    for track_id, paths in candidates.items():
        for path in paths:
            if os.path.isfile(path) and os.access(path, os.R_OK):
                found[track_id] = path
                break
    return found


def _csv(rows: Iterable[_Row]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows:
        votes = [row.votes.get(q, 0) for q in QUADRANT_VALUES]
        writer.writerow([
            row.track_id, escape_cell(row.title), escape_cell(row.artist), row.isrc,
            voted_quadrant(row.votes, row.latest), *votes, sum(votes), row.predicted,
            row.audio_path, redact(row.catalogue_url) if row.catalogue_url else "",
            max(row.latest.values()).isoformat(timespec="seconds")])
    return buffer.getvalue().encode("utf-8")
