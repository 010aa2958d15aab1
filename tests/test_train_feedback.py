"""The users' answers as training labels: :mod:`train.feedback` reads the bot's export, and the
training stages add its clips to the training folds only (never to a held-out fold)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from bot.service import MoodService
from bot.service.feedback import COLUMNS as EXPORTED_COLUMNS
from bot.service.feedback import export_feedback
from bot.service.tracks import StoredTracks
from bot.storage.store import PredictionRecord, TrackRecord
from mer_models.card import ModelCard
from mer_models.features import DESCRIPTOR_NAMES
from tests.fakes.moodlib import VERSIONS, WEIGHTS
from tests.synth import SR, mood_clip
from train.data import CACHE_WINDOWS, Clip, FeatureSet, cache_key
from train.feedback import (
    COLUMNS,
    FEEDBACK_FOLD,
    FeedbackClips,
    FeedbackFileError,
    _analyse,
    artist_key,
    fold_splits,
    load_feedback,
    read_feedback,
)
from train.pipeline import SERVING, Data, _with_feedback_windows, run_ensemble

QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
#: One grid point, 10 trees: the ensemble in a second.
TINY_GRID = {"pca__n_components": [0.95], "stack__svm__C": [1.0],
             "stack__forest__n_estimators": [10]}


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 6-second synthetic clip per quadrant."""
    folder = tmp_path_factory.mktemp("feedback-audio")
    files = {}
    for q in QUADRANTS:
        files[q] = folder / f"{q}.wav"
        sf.write(files[q], mood_clip(q, seconds=6.0, seed=7), SR)
    return files


@pytest.fixture(scope="module")
def clip_features(wavs: dict[str, Path]) -> dict[str, Any]:
    """Their features, decoded as the 4Q cache holds them."""
    return {q: _analyse((str(path), SERVING.with_windows(CACHE_WINDOWS)))
            for q, path in wavs.items()}


def base_data(clip_features: dict[str, Any], per_quadrant_and_fold: int = 2,
              seed: int = 0) -> Data:
    """A stand-in for the 4Q set: each quadrant's real features plus noise, 5 folds, one
    artist per song (``artist <fold>-<quadrant>-<i>``)."""
    rng = np.random.default_rng(seed)
    clips, logmels, descriptors, labels, folds = [], [], [], [], []
    for fold in range(5):
        for qi, q in enumerate(QUADRANTS):
            for i in range(per_quadrant_and_fold):
                song = f"MT{q}{fold}{i}"
                clips.append(Clip(song, q, f"artist {fold}-{q}-{i}", fold, Path(f"{song}.mp3")))
                logmel, desc = clip_features[q]
                logmels.append(logmel)
                noise = rng.normal(0.0, 0.05, desc.shape) * (np.abs(desc) + 1e-3)
                descriptors.append((desc + noise).astype(np.float32))
                labels.append(qi)
                folds.append(fold)
    order = np.argsort([c.song_id for c in clips])  # load_4q sorts by song id
    features = FeatureSet(np.stack(logmels)[order], np.stack(descriptors)[order],
                          np.array(labels, dtype=np.int64)[order],
                          np.array(folds, dtype=np.int64)[order],
                          np.array([c.song_id for c in clips])[order])
    return Data([clips[i] for i in order], features)


def feedback_of(clip_features: dict[str, Any], labels: list[str],
                blocked: list[frozenset[int]], features_of: list[str] | None = None
                ) -> FeedbackClips:
    """Feedback clips labelled ``labels`` with the features of ``features_of`` (default the
    same quadrants)."""
    sources = features_of or labels
    return FeedbackClips(
        source=Path("feedback.csv"), min_votes=1, n_rows=len(labels),
        clips=[Clip(f"feedback-{i}", q, f"user artist {i}", FEEDBACK_FOLD, Path(f"{i}.wav"))
               for i, q in enumerate(labels)],
        labels=np.array([QUADRANTS.index(q) for q in labels], dtype=np.int64),
        logmel=np.stack([clip_features[q][0] for q in sources]),
        descriptors=np.stack([clip_features[q][1] for q in sources]),
        blocked=blocked, skipped=[])


# --- the CSV -------------------------------------------------------------------------------


def test_the_reader_knows_the_exported_columns() -> None:
    assert COLUMNS == EXPORTED_COLUMNS


async def add_local(service: MoodService, title: str, artist: str, path: Path) -> int:
    record = TrackRecord(title=title, artist=artist, provider="local", provider_id=str(path))
    prediction = PredictionRecord(models=dict(VERSIONS), weights=dict(WEIGHTS),
                                  probabilities={q: 0.25 for q in QUADRANTS},
                                  quadrant="Q1", valence=0.5, arousal=0.5, confidence=0.25,
                                  timeline=[])
    return (await service.store.record_analysis(record, prediction)).track.id


async def test_export_round_trip(service: MoodService, wavs: dict[str, Path],
                                 tmp_path: Path) -> None:
    tracks = StoredTracks(service)
    calm = await add_local(service, "=Calm Piece", "The Brights", wavs["Q4"])
    sad = await add_local(service, "Sad Piece", "-Minus", wavs["Q3"])
    for user in ("a", "b"):
        await tracks.feedback(calm, "calm", frontend="discord", user_id=user)
    await tracks.feedback(sad, "sad", frontend="discord", user_id="a")
    moved = tmp_path / "moved.wav"
    moved.write_bytes(wavs["Q1"].read_bytes())
    gone = await add_local(service, "Moved Away", "Band", moved)
    await tracks.feedback(gone, "happy", frontend="discord", user_id="b")
    await tracks.feedback(1, "happy", frontend="discord", user_id="a")  # file not on disk
    await tracks.feedback(2, "tense", frontend="discord", user_id="a")  # Deezer: no audio
    csv_path = tmp_path / "export.csv"
    csv_path.write_bytes((await export_feedback(service)).data)
    moved.unlink()  # after the export, before training

    rows = {row.track_id: row for row in read_feedback(csv_path)}
    assert sorted(rows) == [1, 2, calm, sad, gone]
    assert (rows[calm].title, rows[calm].artist, rows[calm].quadrant) == (
        "=Calm Piece", "The Brights", "Q4")  # the spreadsheet escaping is undone
    assert rows[calm].votes == {"Q1": 0, "Q2": 0, "Q3": 0, "Q4": 2}
    assert rows[sad].artist == "-Minus" and rows[sad].audio_path == str(wavs["Q3"])

    # "The Brights" has a song in fold 3 of this stand-in 4Q set: not in fold 3's training.
    base = [Clip("MT1", "Q1", "the brights", 3, Path("x.mp3")),
            Clip("MT2", "Q2", "Someone Else", 1, Path("y.mp3"))]
    used = load_feedback(csv_path, base, cache_dir=tmp_path / "cache", workers=1)
    assert [c.song_id for c in used.clips] == [f"feedback-{calm}", f"feedback-{sad}"]
    assert used.labels.tolist() == [3, 2] and used.blocked == [frozenset({3}), frozenset()]
    assert used.descriptors.shape == (2, CACHE_WINDOWS, len(DESCRIPTOR_NAMES))
    assert used.logmel.shape[:2] == (2, CACHE_WINDOWS)
    reasons = dict(used.skipped)
    assert reasons[gone] == f"audio file not found: {moved}"
    assert reasons[1].startswith("no audio_path") and reasons[2].startswith("no audio_path")
    assert used.allowed({3}).tolist() == [False, True]
    assert used.allowed({0, 1}).tolist() == [True, True]

    # Two answers needed: the sad piece (one answer) goes too.
    strict = load_feedback(csv_path, base, min_votes=2, cache_dir=tmp_path / "cache",
                           workers=1)
    assert [c.song_id for c in strict.clips] == [f"feedback-{calm}"]
    assert "--feedback-min-votes is 2" in dict(strict.skipped)[sad]
    summary = strict.summary()
    assert (summary["clips"], summary["rows"], summary["min_votes"]) == (1, 5, 2)
    assert summary["per_quadrant"] == {"Q1": 0, "Q2": 0, "Q3": 0, "Q4": 1}
    assert summary["blocked_in_folds"] == {"3": 1}
    assert list((tmp_path / "cache" / "feedback").glob("*.npz"))  # features cached per file


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def good_row(**cells: str) -> list[str]:
    values = {"track_id": "7", "title": "Song", "artist": "Band", "isrc": "",
              "quadrant": "Q2", "votes_q1": "1", "votes_q2": "2", "votes_q3": "0",
              "votes_q4": "0", "users": "3", "predicted": "Q1", "audio_path": "song.wav",
              "source_url": "", "last_answer_at": "2026-05-01T10:00:00+00:00"}
    values.update(cells)
    return [values[c] for c in COLUMNS]


@pytest.mark.parametrize(("rows", "message"), [
    ([good_row(quadrant="Q5")], r"line 2: quadrant 'Q5'"),
    ([good_row(track_id="x")], r"line 2: track_id 'x' is not a whole number"),
    ([good_row(track_id="0")], r"line 2: track_id must be positive"),
    ([good_row(votes_q1="-1")], r"line 2: votes_q1 '-1'"),
    ([good_row(users="4")], r"line 2: users is 4 but the votes add up to 3"),
    ([good_row(quadrant="Q1")], r"line 2: quadrant Q1 does not have the most votes"),
    ([good_row(predicted="sad")], r"line 2: predicted 'sad'"),
    ([good_row(last_answer_at="yesterday")], r"line 2: last_answer_at 'yesterday'"),
    ([good_row(), good_row(track_id="8"), good_row()], r"line 4: track 7 is already on line 2"),
    ([good_row(), good_row()[:-1]], r"line 3: 13 fields, the header has 14"),
])
def test_a_bad_row_is_refused_with_its_line(tmp_path: Path, rows: list[list[str]],
                                            message: str) -> None:
    path = write_rows(tmp_path / "bad.csv", list(COLUMNS), rows)
    with pytest.raises(FeedbackFileError, match=message):
        read_feedback(path)


def test_a_bad_file_is_refused(tmp_path: Path) -> None:
    header = [c for c in COLUMNS if c != "quadrant"]
    with pytest.raises(FeedbackFileError, match=r"line 1: not a feedback export: no column "
                                                r"quadrant"):
        read_feedback(write_rows(tmp_path / "a.csv", header, []))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(FeedbackFileError, match="empty file"):
        read_feedback(tmp_path / "empty.csv")
    (tmp_path / "latin1.csv").write_bytes(",".join(COLUMNS).encode() + b"\n\xe9t\xe9\n")
    with pytest.raises(FeedbackFileError, match="UTF-8"):
        read_feedback(tmp_path / "latin1.csv")
    with pytest.raises(FeedbackFileError, match="no such file"):
        read_feedback(tmp_path / "missing.csv")


def test_extra_columns_and_a_bom_are_accepted(tmp_path: Path, wavs: dict[str, Path]) -> None:
    path = tmp_path / "f.csv"
    write_rows(path, [*COLUMNS, "note"], [[*good_row(audio_path=wavs["Q2"].name), "hi"]])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    (row,) = read_feedback(path)
    assert (row.track_id, row.quadrant, row.line) == (7, "Q2", 2)
    # A relative audio_path is taken from the CSV's folder.
    (tmp_path / wavs["Q2"].name).write_bytes(wavs["Q2"].read_bytes())
    used = load_feedback(path, [], cache_dir=tmp_path / "cache", workers=1)
    assert used.clips[0].path == (tmp_path / wavs["Q2"].name).resolve()


def test_unusable_audio_is_skipped_with_a_reason(tmp_path: Path, wavs: dict[str, Path]) -> None:
    (tmp_path / "noise.mp3").write_bytes(b"not audio at all" * 100)
    path = write_rows(tmp_path / "f.csv", list(COLUMNS), [
        good_row(track_id="1", audio_path=str(wavs["Q2"])),
        good_row(track_id="2", audio_path=str(wavs["Q2"])),  # the same file again
        good_row(track_id="3", audio_path="noise.mp3"),
    ])
    used = load_feedback(path, [], cache_dir=tmp_path / "cache", workers=1)
    assert [c.song_id for c in used.clips] == ["feedback-1"]
    reasons = dict(used.skipped)
    assert reasons[2] == "same audio file as track 1"
    assert reasons[3].startswith("audio cannot be analysed")
    with pytest.raises(ValueError, match="min_votes"):
        load_feedback(path, [], min_votes=0)


def test_header_only_gives_no_clips(tmp_path: Path) -> None:
    used = load_feedback(write_rows(tmp_path / "f.csv", list(COLUMNS), []), [],
                         cache_dir=tmp_path, workers=1)
    assert len(used) == 0 and used.descriptors.shape == (0, CACHE_WINDOWS,
                                                         len(DESCRIPTOR_NAMES))


@pytest.mark.parametrize(("a", "b"), [("The Beatles", "beatles"), ("Beyoncé", "BEYONCE"),
                                      ("Guns N' Roses", "guns n roses"), ("AC/DC", "ac dc")])
def test_artist_names_compare_loosely(a: str, b: str) -> None:
    assert artist_key(a) == artist_key(b)


def test_artist_names_stay_distinct() -> None:
    assert artist_key("The The") != "" and artist_key("Blur") != artist_key("Oasis")


# --- the folds -------------------------------------------------------------------------------


def test_feedback_rows_train_and_are_never_tested() -> None:
    folds = np.repeat(np.arange(5), 3)  # 15 4Q rows, then 3 feedback rows (15, 16, 17)
    blocked = [frozenset(), frozenset({2}), frozenset({0, 4})]
    splits = fold_splits(folds, blocked)
    assert len(splits) == 5
    for k, (train, test) in enumerate(splits):
        assert test.tolist() == np.flatnonzero(folds == k).tolist()  # the same 4Q rows as ever
        assert not set(train) & set(test)
        expected = [15] + ([16] if k != 2 else []) + ([17] if k not in (0, 4) else [])
        assert sorted(i for i in train if i >= 15) == expected
        assert sorted(i for i in train if i < 15) == np.flatnonzero(folds != k).tolist()
    masked = fold_splits(folds, blocked, test_mask=np.arange(15) % 3 == 0)
    assert [t.tolist() for _, t in masked] == [[0], [3], [6], [9], [12]]


def test_cldnn_windows_take_only_the_allowed_feedback(clip_features: dict[str, Any]) -> None:
    data = base_data(clip_features, per_quadrant_and_fold=1)
    feedback = feedback_of(clip_features, ["Q1", "Q2", "Q3"],
                           [frozenset(), frozenset({1}), frozenset({3})])
    with_users = replace(data, feedback=feedback)
    x = np.zeros((4, *data.features.logmel.shape[2:]), np.float16)
    y = np.zeros(4, np.int64)
    # Fold 1 held out, fold 2 for early stopping: clip 1 (its artist is in fold 1) stays out.
    tx, ty = _with_feedback_windows(with_users, x, y, {1, 2})
    assert len(tx) == 4 + 2 * CACHE_WINDOWS
    assert ty[4:].tolist() == [0] * CACHE_WINDOWS + [2] * CACHE_WINDOWS
    assert len(_with_feedback_windows(with_users, x, y, None)[0]) == 4 + 3 * CACHE_WINDOWS
    assert _with_feedback_windows(data, x, y, {1, 2})[0] is x  # no feedback: unchanged


def test_ensemble_figures_stay_comparable(clip_features: dict[str, Any], tmp_path: Path) -> None:
    """Feedback barred from every fold leaves the out-of-fold figures exactly as without it;
    allowed, it changes the models (and the final one) but not which clips are scored."""
    data = base_data(clip_features)
    plain = run_ensemble(data, _run(tmp_path, "plain"), n_jobs=1, grid=TINY_GRID)
    # Eight clips that sound calm, labelled tense: they must move the models when they train.
    labels, sounds = ["Q2"] * 8, ["Q4"] * 8
    barred = replace(data, feedback=feedback_of(clip_features, labels,
                                                [frozenset(range(5))] * 8, sounds))
    same = run_ensemble(barred, _run(tmp_path, "barred"), n_jobs=1, grid=TINY_GRID)
    np.testing.assert_allclose(np.load(tmp_path / "barred" / "oof_ensemble.npy"),
                               np.load(tmp_path / "plain" / "oof_ensemble.npy"))
    assert same["macro_f1_mean"] == plain["macro_f1_mean"]
    assert same["feedback"]["clips"] == 8 and "feedback" not in plain

    allowed = replace(data, feedback=feedback_of(clip_features, labels, [frozenset()] * 8,
                                                 sounds))
    changed = run_ensemble(allowed, _run(tmp_path, "allowed"), n_jobs=1, grid=TINY_GRID)
    oof = np.load(tmp_path / "allowed" / "oof_ensemble.npy")
    assert oof.shape == (len(data.clips), 4)  # the 4Q clips only, as the fusion reads them
    assert not np.allclose(oof, np.load(tmp_path / "plain" / "oof_ensemble.npy"))
    assert changed["feedback"]["per_quadrant"] == {"Q1": 0, "Q2": 8, "Q3": 0, "Q4": 0}
    card = ModelCard.load(tmp_path / "allowed" / "models" / "mood-4q-ensemble-1.json")
    assert card.training.n_clips == 720 + 8 and "labelled by the bot's users" in \
        card.training.dataset


def _run(tmp_path: Path, name: str) -> Path:
    (tmp_path / name).mkdir()
    return tmp_path / name


@pytest.fixture
def quick_heads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The musicnn heads with a two-point grid (the fold plumbing is what is tested)."""
    import train.musicnn_embed

    heads = train.musicnn_embed._heads()
    estimator, grid = heads["logreg"]
    heads["logreg"] = (estimator, {"logisticregression__C": grid["logisticregression__C"][-2:]})
    monkeypatch.setattr(train.musicnn_embed, "_heads", lambda: heads)


@pytest.mark.usefixtures("quick_heads")
def test_musicnn_head_cross_validation_keeps_feedback_out_of_the_tests() -> None:
    from train.musicnn_embed import cross_validate
    from train.musicnn_head import _cross_validate_with

    rng = np.random.default_rng(3)
    labels = np.tile(np.arange(4), 10)
    folds = np.repeat(np.arange(5), 8)
    x = rng.normal(labels[:, None], 0.7, (40, 6))
    x_users = rng.normal(0.0, 0.7, (6, 6))
    barred = feedback_of({q: (np.zeros((5, 1, 1)), np.zeros((5, 1))) for q in QUADRANTS},
                         ["Q3"] * 6, [frozenset(range(5))] * 6)
    original = np.ones(40, dtype=bool)
    expected, _ = cross_validate(x, labels, folds, "logreg", test_mask=original)
    oof, chosen = _cross_validate_with(x, labels, folds, "logreg", original, x_users, barred)
    np.testing.assert_allclose(oof, expected)
    assert [c["fold"] for c in chosen] == [0, 1, 2, 3, 4]
    allowed = replace(barred, blocked=[frozenset()] * 6)
    moved, _ = _cross_validate_with(x, labels, folds, "logreg", original, x_users, allowed)
    assert not np.allclose(moved, expected) and np.allclose(moved.sum(axis=1), 1.0)


# --- end to end ----------------------------------------------------------------------------


def test_train_models_with_feedback_end_to_end(clip_features: dict[str, Any],
                                               wavs: dict[str, Path], tmp_path: Path) -> None:
    """``python -m train models --tiny --feedback FILE`` on a stand-in 4Q folder whose
    features are already in the cache (no 4Q clip is decoded; the feedback clips are)."""
    from train.__main__ import app

    data = base_data(clip_features)
    root, cache = tmp_path / "data", tmp_path / "cache"
    (root / "4q").mkdir(parents=True)
    with (root / "4q" / "splits.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["song_id", "quadrant", "artist", "fold"])
        for clip in data.clips:
            writer.writerow([clip.song_id, clip.quadrant, clip.artist, clip.fold])
            audio = root / "4q" / "audio" / clip.quadrant / f"{clip.song_id}.mp3"
            audio.parent.mkdir(parents=True, exist_ok=True)
            audio.write_bytes(b"")  # listed; its features come from the cache
    cache.mkdir()
    f = data.features
    np.savez_compressed(cache / f"4q-{cache_key(SERVING.with_windows(CACHE_WINDOWS))}.npz",
                        logmel=f.logmel, descriptors=f.descriptors, labels=f.labels,
                        folds=f.folds, song_ids=f.song_ids)
    rows = []
    for i, q in enumerate(QUADRANTS):
        cells = {f"votes_{other.lower()}": "0" for other in QUADRANTS}
        cells[f"votes_{q.lower()}"] = "2"
        rows.append(good_row(track_id=str(i + 1), quadrant=q, users="2",
                             audio_path=str(wavs[q]),
                             artist="artist 0-Q1-0" if q == "Q1" else f"user band {q}",
                             **cells))
    rows.append(good_row(track_id="9", audio_path="", quadrant="Q2"))
    feedback = write_rows(tmp_path / "feedback.csv", list(COLUMNS), rows)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["models", "--tiny", "--data", str(root), "--run",
                                      str(run), "--cache", str(cache), "--feedback",
                                      str(feedback), "--feedback-min-votes", "2"])
    assert result.exit_code == 0, result.output
    assert "feedback: 4 of 5 tracks used for training, 1 skipped" in result.output
    metrics = json.loads((run / "metrics_ensemble.json").read_text())
    assert metrics["feedback"]["clips"] == 4
    assert metrics["feedback"]["blocked_in_folds"] == {"0": 1}  # artist 0-Q1-0 is in fold 0
    assert metrics["feedback"]["skipped"] == [
        {"track_id": 9, "reason": "no audio_path (the export found no file: a catalogue "
                                  "track exported without fetching its preview, or a local "
                                  "file that was gone)"}]
    assert len(np.load(run / "oof_ensemble.npy")) == len(data.clips)

    bad = write_rows(tmp_path / "bad.csv", list(COLUMNS), [good_row(quadrant="Q9")])
    result = CliRunner().invoke(app, ["models", "--tiny", "--data", str(root), "--run",
                                      str(run), "--cache", str(cache), "--feedback", str(bad)])
    assert result.exit_code == 2 and "line 2" in result.output


@pytest.mark.usefixtures("quick_heads")
def test_musicnn_head_trains_on_feedback(clip_features: dict[str, Any], wavs: dict[str, Path],
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    """run_musicnn with feedback: the users' clips are embedded as served, join the training
    folds and the final head; the scored clips stay the 4Q ones."""
    import train.musicnn_head as head
    from train.pipeline import TRAINING_DATA

    rng = np.random.default_rng(5)
    labels = np.tile(np.arange(4), 10)
    folds = np.repeat(np.arange(5), 8)
    size = 400 * len(head.SERVING_LAYOUT["networks"])
    x = rng.normal(labels[:, None], 0.7, (40, size)).astype(np.float32)
    monkeypatch.setattr(head, "training_embeddings", lambda *a, **k: (x, {}))
    feedback = replace(feedback_of(clip_features, list(QUADRANTS), [frozenset({0})] * 4),
                       clips=[Clip(f"feedback-{q}", q, "band", FEEDBACK_FOLD, wavs[q])
                              for q in QUADRANTS])
    metrics = head.run_musicnn(labels, folds, [f"s{i}" for i in range(40)], tmp_path,
                               root=tmp_path, analysis=SERVING, training=TRAINING_DATA,
                               augment=False, feedback=feedback)
    assert np.load(tmp_path / "oof_musicnn.npy").shape == (40, 4)
    assert metrics["feedback"]["clips"] == 4 and metrics["feedback"]["blocked_in_folds"] == {
        "0": 4}
    card = ModelCard.load(tmp_path / "models" / "mood-4q-musicnn-1.json")
    assert card.training.n_clips == 724
