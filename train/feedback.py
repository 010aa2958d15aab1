"""Users' answers as extra labelled clips: read the bot's feedback export for training.

``python -m train <ensemble|cldnn|musicnn|all|models> --feedback FILE.csv`` reads the CSV that
``/mood-admin feedback-export`` attaches (:mod:`bot.service.feedback` documents its columns),
keeps the tracks whose voted quadrant has at least ``--feedback-min-votes`` answers and whose
``audio_path`` is a readable, decodable file, and adds them to the training data:

- to the TRAINING part of every cross-validation fold, never to a held-out (or early-stopping)
  fold, so the out-of-fold figures are measured on the same 4Q clips as before and stay
  comparable with earlier runs;
- not even to the training part of a fold that holds a 4Q song by the same artist (names
  compared by :func:`artist_key`): the folds are artist-disjoint, and a user's clip of that
  artist would leak into the figures;
- to the training set of every final model.

A malformed file is refused with a :class:`FeedbackFileError` that names the line (the CSV is
written by the bot, so a bad row means it was edited or cut short, and training on part of it
would go unnoticed); rows that are well-formed but unusable are skipped, each with its reason.
Relative ``audio_path`` values are taken from the CSV's folder, so a folder of clips can travel
with its CSV. Features are decoded as for the 4Q clips and cached per file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from mer_models.audio import load_windows
from mer_models.card import TrainingData
from mer_models.config import AnalysisConfig
from mer_models.errors import AudioError
from mer_models.features import DESCRIPTOR_NAMES, extract_features
from train.data import CACHE_WINDOWS, DEFAULT_CACHE_DIR, QUADRANT_NAMES, Clip, cache_key

logger = logging.getLogger(__name__)

#: The export's header row (``bot.service.feedback.COLUMNS``; bot and train share no code).
COLUMNS: Final[tuple[str, ...]] = (
    "track_id", "title", "artist", "isrc", "quadrant",
    *(f"votes_{q.lower()}" for q in QUADRANT_NAMES),
    "users", "predicted", "audio_path", "source_url", "last_answer_at")
#: The fold of a feedback clip: never held out (as in scikit-learn's ``PredefinedSplit``).
FEEDBACK_FOLD: Final = -1
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class FeedbackFileError(ValueError):
    """The feedback CSV is not a valid export; the message names the file and the line."""


@dataclass(frozen=True)
class FeedbackRow:
    """One track of the export: its voted quadrant, the votes, and where its audio is."""

    track_id: int
    title: str
    artist: str
    isrc: str
    quadrant: str
    votes: dict[str, int]
    users: int
    predicted: str | None
    audio_path: str
    source_url: str
    last_answer_at: datetime
    line: int


def read_feedback(path: Path) -> list[FeedbackRow]:
    """Read and check a feedback export.

    Parameters
    ----------
    path : Path
        The CSV (UTF-8, with or without a byte-order mark).

    Returns
    -------
    list of FeedbackRow
        In file order; empty for a file with the header only.

    Raises
    ------
    FeedbackFileError
        The file is missing or not UTF-8, its header lacks a column, or a row is malformed
        (wrong field count, bad number or quadrant, votes that disagree with the label,
        a track listed twice); the message says ``<file>, line <n>: <what>``.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise FeedbackFileError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise FeedbackFileError(f"{path}: cannot read it as UTF-8 text ({exc})") from exc
    reader = csv.reader(text.splitlines(keepends=True))
    header = next(reader, None)
    if header is None:
        raise FeedbackFileError(f"{path}: empty file, not a feedback export")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise FeedbackFileError(f"{path}, line 1: not a feedback export: no column "
                                f"{', '.join(missing)} (expected {','.join(COLUMNS)})")
    if len(set(header)) != len(header):
        raise FeedbackFileError(f"{path}, line 1: a column is named twice")
    extra = [c for c in header if c not in COLUMNS]
    if extra:
        logger.warning("%s: ignoring unknown columns %s", path, ", ".join(extra))
    rows: list[FeedbackRow] = []
    lines: dict[int, int] = {}
    for fields in reader:
        line = reader.line_num
        if not fields:
            continue  # a blank line
        if len(fields) != len(header):
            raise FeedbackFileError(f"{path}, line {line}: {len(fields)} fields, the header "
                                    f"has {len(header)}")
        try:
            row = _row(dict(zip(header, fields, strict=True)), line)
        except ValueError as exc:
            raise FeedbackFileError(f"{path}, line {line}: {exc}") from exc
        if row.track_id in lines:
            raise FeedbackFileError(f"{path}, line {line}: track {row.track_id} is already on "
                                    f"line {lines[row.track_id]}")
        lines[row.track_id] = line
        rows.append(row)
    return rows


def _row(cells: dict[str, str], line: int) -> FeedbackRow:
    """One checked row (ValueError names the bad cell)."""
    track_id = _count(cells, "track_id")
    if track_id < 1:
        raise ValueError(f"track_id must be positive, got {track_id}")
    quadrant = cells["quadrant"]
    if quadrant not in QUADRANT_NAMES:
        raise ValueError(f"quadrant {quadrant!r} is not one of {', '.join(QUADRANT_NAMES)}")
    votes = {q: _count(cells, f"votes_{q.lower()}") for q in QUADRANT_NAMES}
    users = _count(cells, "users")
    if users != sum(votes.values()):
        raise ValueError(f"users is {users} but the votes add up to {sum(votes.values())}")
    if votes[quadrant] == 0 or votes[quadrant] < max(votes.values()):
        raise ValueError(f"quadrant {quadrant} does not have the most votes "
                         f"({', '.join(f'{q} {n}' for q, n in votes.items())})")
    predicted = cells["predicted"] or None
    if predicted is not None and predicted not in QUADRANT_NAMES:
        raise ValueError(f"predicted {predicted!r} is not one of {', '.join(QUADRANT_NAMES)}")
    try:
        answered = datetime.fromisoformat(cells["last_answer_at"])
    except ValueError:
        raise ValueError(f"last_answer_at {cells['last_answer_at']!r} is not an ISO 8601 "
                         "time") from None
    return FeedbackRow(track_id=track_id, title=_unescape(cells["title"]),
                       artist=_unescape(cells["artist"]), isrc=cells["isrc"],
                       quadrant=quadrant, votes=votes, users=users, predicted=predicted,
                       audio_path=cells["audio_path"], source_url=cells["source_url"],
                       last_answer_at=answered, line=line)


def _count(cells: dict[str, str], column: str) -> int:
    value = cells[column].strip()
    if not value.isdigit():
        raise ValueError(f"{column} {cells[column]!r} is not a whole number >= 0")
    return int(value)


def _unescape(text: str) -> str:
    """Undo the export's spreadsheet escaping (``bot.service.feedback.escape_cell``)."""
    escaped = text.startswith("'") and text.lstrip("'").startswith(_FORMULA_START)
    return text[1:] if escaped else text


def artist_key(name: str) -> str:
    """An artist's name for comparison: letters and digits only, casefolded, accents and a
    leading "the" dropped (``"The Beatles"`` and ``"beatles"`` are one artist)."""
    plain = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in plain if not unicodedata.combining(c)).casefold()
    words = re.findall(r"\w+", plain)
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    return "".join(words)


@dataclass(frozen=True)
class FeedbackClips:
    """The usable feedback clips with their features, and what was left out.

    Attributes
    ----------
    source : Path
        The CSV.
    min_votes : int
        Answers the voted quadrant needed.
    n_rows : int
        Rows in the CSV.
    clips : list of Clip
        The clips kept (``song_id`` ``feedback-<track id>``, fold :data:`FEEDBACK_FOLD`).
    labels : ndarray, shape (n_clips,), int64
        Quadrant index 0..3 of each clip.
    logmel : ndarray, shape (n_clips, n_windows, n_mels, frames), float16
    descriptors : ndarray, shape (n_clips, n_windows, n_descriptors), float32
        Features of the same windows as the 4Q cache (:data:`train.data.CACHE_WINDOWS`).
    blocked : list of frozenset of int
        For each clip, the 4Q folds holding a song by its artist: it never trains a model
        that is scored on those folds.
    skipped : list of (int, str)
        ``(track id, reason)`` of the rows left out.
    """

    source: Path
    min_votes: int
    n_rows: int
    clips: list[Clip]
    labels: NDArray[np.int64]
    logmel: NDArray[np.float16]
    descriptors: NDArray[np.float32]
    blocked: list[frozenset[int]]
    skipped: list[tuple[int, str]]

    def __len__(self) -> int:
        return len(self.clips)

    def allowed(self, held_out: Collection[int]) -> NDArray[np.bool_]:
        """Which clips may train a model that is scored (or early-stopped) on ``held_out``
        folds: those whose artist is in none of them."""
        held = frozenset(int(k) for k in held_out)
        return np.array([not (b & held) for b in self.blocked], dtype=bool)

    def training_data(self, base: TrainingData) -> TrainingData:
        """A model card's description of the 4Q data plus these clips."""
        if not self.clips:
            return base
        return base.model_copy(update={
            "dataset": f"{base.dataset}; plus {len(self)} clips labelled by the bot's users "
                       f"({self.source.name})",
            "n_clips": base.n_clips + len(self),
            "split": f"{base.split}; the users' clips train every fold (except folds holding "
                     "their artist) and are never scored"})

    def summary(self) -> dict[str, Any]:
        """What a run's metrics record about the feedback used."""
        return {
            "file": str(self.source), "rows": self.n_rows, "min_votes": self.min_votes,
            "clips": len(self),
            "per_quadrant": {q: int((self.labels == i).sum())
                             for i, q in enumerate(QUADRANT_NAMES)},
            "blocked_in_folds": {str(k): n for k, n in sorted(
                Counter(k for b in self.blocked for k in b).items())},
            "skipped": [{"track_id": t, "reason": r} for t, r in self.skipped],
        }


def load_feedback(path: Path, base: Sequence[Clip], *, min_votes: int = 1,
                  config: AnalysisConfig | None = None, cache_dir: Path = DEFAULT_CACHE_DIR,
                  workers: int | None = None) -> FeedbackClips:
    """The usable clips of a feedback export, with their features.

    Parameters
    ----------
    path : Path
        The CSV of ``/mood-admin feedback-export``.
    base : sequence of Clip
        The 4Q clips (their artists and folds decide where each feedback clip may train).
    min_votes : int
        Answers the voted quadrant needs (>= 1): 2 drops the tracks that only one user
        labelled, and 1-1 ties.
    config : AnalysisConfig, optional
        Decoding and windows (default: the serving settings with the cache's 5 windows).
    cache_dir : Path
        Where each file's features are cached (``feedback/`` below it).
    workers : int, optional
        Decoding processes (default: all cores; 1 decodes in this process).

    Raises
    ------
    FeedbackFileError
        A malformed file (see :func:`read_feedback`).
    ValueError
        ``min_votes`` below 1.
    """
    if min_votes < 1:
        raise ValueError(f"min_votes must be at least 1, got {min_votes}")
    config = config or AnalysisConfig().with_windows(CACHE_WINDOWS)
    rows = read_feedback(path)
    skipped: list[tuple[int, str]] = []
    wanted: list[tuple[FeedbackRow, Path]] = []
    seen: dict[Path, int] = {}
    for row in rows:
        reason, audio = _usable(row, path.parent, min_votes)
        if audio is not None and audio in seen:
            reason = f"same audio file as track {seen[audio]}"
        if reason is not None or audio is None:
            skipped.append((row.track_id, reason or "no audio"))
            continue
        seen[audio] = row.track_id
        wanted.append((row, audio))
    features = _features([audio for _, audio in wanted], config, cache_dir, workers)
    folds_of: dict[str, set[int]] = {}
    for clip in base:
        folds_of.setdefault(artist_key(clip.artist), set()).add(clip.fold)
    clips, labels, logmels, descriptors, blocked = [], [], [], [], []
    for row, audio in wanted:
        result = features[audio]
        if isinstance(result, str):
            skipped.append((row.track_id, f"audio cannot be analysed: {result}"))
            continue
        clips.append(Clip(f"feedback-{row.track_id}", row.quadrant, row.artist, FEEDBACK_FOLD,
                          audio))
        labels.append(QUADRANT_NAMES.index(row.quadrant))
        logmels.append(result[0])
        descriptors.append(result[1])
        blocked.append(frozenset(folds_of.get(artist_key(row.artist), ())
                                 if row.artist.strip() else ()))
    shape = (config.n_windows, config.n_mels, config.window_frames)
    feedback = FeedbackClips(
        source=path, min_votes=min_votes, n_rows=len(rows), clips=clips,
        labels=np.array(labels, dtype=np.int64),
        logmel=np.stack(logmels) if logmels else np.zeros((0, *shape), np.float16),
        descriptors=(np.stack(descriptors) if descriptors else
                     np.zeros((0, config.n_windows, len(DESCRIPTOR_NAMES)), np.float32)),
        blocked=blocked, skipped=sorted(skipped))
    logger.info("feedback %s: %d of %d tracks used (%s)", path.name, len(feedback),
                len(rows), ", ".join(f"{q} {n}" for q, n in
                                     feedback.summary()["per_quadrant"].items()))
    for track_id, reason in feedback.skipped:
        logger.warning("feedback %s: track %d skipped: %s", path.name, track_id, reason)
    return feedback


def _usable(row: FeedbackRow, folder: Path, min_votes: int) -> tuple[str | None, Path | None]:
    """``(reason to skip or None, the audio file)``."""
    if row.votes[row.quadrant] < min_votes:
        return (f"{row.votes[row.quadrant]} answer(s) for {row.quadrant}, "
                f"--feedback-min-votes is {min_votes}"), None
    if not row.audio_path:
        return ("no audio_path (the export found no file: a catalogue track exported without "
                "fetching its preview, or a local file that was gone)"), None
    audio = Path(row.audio_path)
    audio = (audio if audio.is_absolute() else folder / audio).resolve()
    if not audio.is_file():
        return f"audio file not found: {audio}", None
    if not os.access(audio, os.R_OK):
        return f"audio file not readable: {audio}", None
    return None, audio


_Features = tuple[NDArray[np.float16], NDArray[np.float32]] | str


def _features(paths: list[Path], config: AnalysisConfig, cache_dir: Path,
              workers: int | None) -> dict[Path, _Features]:
    """``{path: (logmel, descriptors)}``, or the reason a file cannot be analysed."""
    folder = cache_dir / "feedback"
    out: dict[Path, _Features] = {}
    todo: list[tuple[Path, Path]] = []
    for path in paths:
        stat = path.stat()
        payload = {"features": cache_key(config), "path": str(path), "size": stat.st_size,
                   "mtime_ns": stat.st_mtime_ns}
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]
        cached = folder / f"{key}.npz"
        if cached.is_file():
            with np.load(cached) as saved:
                out[path] = (saved["logmel"], saved["descriptors"])
        else:
            todo.append((path, cached))
    jobs = [(str(path), config) for path, _ in todo]
    if workers == 1 or len(jobs) <= 1:
        results = [_analyse(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
            results = list(pool.map(_analyse, jobs))
    for (path, cached), result in zip(todo, results, strict=True):
        out[path] = result
        if not isinstance(result, str):
            folder.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, logmel=result[0], descriptors=result[1])
            tmp.replace(cached)
    return out


def _analyse(job: tuple[str, AnalysisConfig]) -> _Features:
    path, config = job
    try:
        audio = load_windows(path, config)
        features = extract_features(audio.windows, config)
    except AudioError as exc:
        return exc.reason
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return features.logmel.astype(np.float16), features.descriptors.astype(np.float32)


def fold_splits(folds: NDArray[np.integer], blocked: Sequence[frozenset[int]], *,
                test_mask: NDArray[np.bool_] | None = None
                ) -> list[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """Cross-validation splits over 4Q rows followed by feedback rows.

    Fold ``k`` trains on the 4Q rows of the other folds and on the feedback rows whose
    artist is not in fold ``k``, and tests on the 4Q rows of fold ``k`` only (those of
    ``test_mask``, when given). A scikit-learn ``cv`` argument.

    Parameters
    ----------
    folds : ndarray, shape (n,)
        Fold of each 4Q row (the rows ``0 .. n-1``).
    blocked : sequence of frozenset, length m
        For each feedback row (rows ``n .. n+m-1``), the folds it must not train for.
    test_mask : ndarray of bool, shape (n,), optional
        4Q rows that may be tested (the originals, when the rest are augmented copies).

    Returns
    -------
    list of (train indices, test indices)
        One per fold, in increasing fold order.
    """
    folds = np.asarray(folds)
    n = len(folds)
    splits = []
    for k in np.unique(folds):
        extra = [n + i for i, b in enumerate(blocked) if int(k) not in b]
        test = folds == k
        if test_mask is not None:
            test = test & test_mask
        splits.append((np.concatenate([np.flatnonzero(folds != k), np.array(extra, np.intp)]),
                       np.flatnonzero(test)))
    return splits


def out_of_fold(model: Any, x: NDArray[np.floating], y: NDArray[np.str_],
                splits: list[tuple[NDArray[np.intp], NDArray[np.intp]]], *, n_jobs: int
                ) -> NDArray[np.float64]:
    """``cross_val_predict(method="predict_proba")`` for splits that leave rows untested.

    Parameters
    ----------
    model : estimator
        Cloned and fitted on each split's training rows.
    x : ndarray, shape (n, n_features)
    y : ndarray of str, shape (n,)
        Quadrant names.
    splits : list of (train, test) index arrays
        From :func:`fold_splits`.
    n_jobs : int
        Splits fitted at once.

    Returns
    -------
    ndarray, shape (n, 4)
        Probabilities of Q1..Q4; rows never tested (the feedback clips) stay 0.
    """
    from joblib import Parallel, delayed
    from sklearn.base import clone

    def fit_predict(train: NDArray[np.intp], test: NDArray[np.intp]
                    ) -> tuple[NDArray[np.intp], NDArray[np.float64], list[str]]:
        fitted = clone(model).fit(x[train], y[train])
        return test, fitted.predict_proba(x[test]), [str(c) for c in fitted.classes_]

    oof = np.zeros((len(x), len(QUADRANT_NAMES)))
    for test, p, classes in Parallel(n_jobs=n_jobs)(delayed(fit_predict)(train, test)
                                                    for train, test in splits):
        oof[np.ix_(test, [QUADRANT_NAMES.index(c) for c in classes])] = p
    return oof
