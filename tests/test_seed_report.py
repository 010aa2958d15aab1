"""Tests of the seed-report reproduction on a small synthetic table in the seed CSV format."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from mer_models.moods import Quadrant
from train.seed_report import (
    LABEL_SCHEMES,
    SEED_TO_QUADRANT,
    SPOTIFY_FEATURES,
    apply_scheme,
    build_spotify_model,
    load_seed_table,
    main,
    make_pipeline,
    render_markdown,
    reproduce,
    to_quadrant_probabilities,
)

COLUMNS = [
    "id", "danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness",
    "instrumentalness", "liveness", "valence", "tempo", "duration_ms", "time_signature",
    "artist_name", "track_name", "preview_url", "binary_label", "multiclass_label", "mood",
]  # fmt: skip
MOOD_CODES = {"sad": (-1, 1), "calm": (-1, 2), "happy": (1, 3), "energetic": (1, 4)}
# Unbalanced like the real table, but separable: each mood has its own (energy, valence) corner.
PER_MOOD = {"sad": 12, "calm": 30, "happy": 10, "energetic": 28}
CENTRES = {"sad": (0.2, 0.2), "calm": (0.2, 0.8), "happy": (0.8, 0.8), "energetic": (0.8, 0.2)}


def _write_table(path: Path, rng: np.random.Generator) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for mood, n in PER_MOOD.items():
            energy, valence = CENTRES[mood]
            binary, multi = MOOD_CODES[mood]
            for i in range(n):
                noise = rng.normal(0.0, 0.03, 2)
                writer.writerow([
                    f"{mood}{i:03d}", rng.uniform(0.3, 0.7), energy + noise[0],
                    int(rng.integers(0, 12)), rng.uniform(-20, -5), int(rng.integers(0, 2)),
                    rng.uniform(0.03, 0.1), rng.uniform(0, 1), rng.uniform(0, 1),
                    rng.uniform(0.05, 0.3), valence + noise[1], rng.uniform(80, 160),
                    int(rng.integers(120_000, 300_000)), 4, "artist", "title", "", binary,
                    multi, mood,
                ])  # fmt: skip
    return path


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread() -> Iterator[None]:
    # Tiny BLAS calls run several times slower when threads compete for the cores.
    with threadpool_limits(limits=1):
        yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def table_path(tmp_path: Path, rng: np.random.Generator) -> Path:
    return _write_table(tmp_path / "seed_moods.csv", rng)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = _write_table(
        tmp_path_factory.mktemp("seed") / "seed_moods.csv", np.random.default_rng(7)
    )
    return reproduce(path, seed=0, n_trees=10, spread_seeds=(1,))


def test_load_seed_table(table_path: Path) -> None:
    table = load_seed_table(table_path)
    n = sum(PER_MOOD.values())
    assert table.X.shape == (n, len(SPOTIFY_FEATURES))
    assert table.X.dtype == np.float64
    assert len(table.moods) == len(table.track_ids) == n
    assert set(table.moods.tolist()) == set(PER_MOOD)
    assert "duration_ms" not in SPOTIFY_FEATURES
    assert SPOTIFY_FEATURES[0] == "danceability"
    assert SPOTIFY_FEATURES[-1] == "time_signature"


def test_missing_file_raises_with_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "seed_moods.csv"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_seed_table(missing)


def test_main_exits_2_when_data_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.md"
    assert main(["--data", str(tmp_path / "absent.csv"), "--out", str(out)]) == 2
    assert "absent.csv" in capsys.readouterr().err
    assert not out.exists()


def test_bad_rows_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(",".join(COLUMNS) + "\n" + ",".join(["x"] * len(COLUMNS)) + "\n")
    with pytest.raises(ValueError, match="danceability"):
        load_seed_table(path)
    path.write_text("id,mood\n1,sad\n")
    with pytest.raises(ValueError, match="missing column"):
        load_seed_table(path)


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("3-class", ["sad", "calm", "joyful", "joyful"]),
        ("4-class", ["sad", "calm", "happy", "energetic"]),
        ("binary", ["negative", "negative", "positive", "positive"]),
    ],
)
def test_label_schemes(scheme: str, expected: list[str]) -> None:
    assert apply_scheme(["sad", "calm", "happy", "energetic"], scheme).tolist() == expected


@pytest.mark.parametrize(("moods", "scheme"), [(["sad"], "5-class"), (["angry"], "binary")])
def test_label_scheme_errors(moods: list[str], scheme: str) -> None:
    with pytest.raises(ValueError, match=r"5-class|angry"):
        apply_scheme(moods, scheme)


def test_smote_resamples_training_only(table_path: Path) -> None:
    table = load_seed_table(table_path)
    y = apply_scheme(table.moods, "4-class")
    pipeline = make_pipeline("decision_tree", seed=0)
    _, resampled_y = pipeline[:-1].fit_resample(table.X, y)
    # fitting sees a balanced, larger set ...
    assert len(resampled_y) == 4 * max(PER_MOOD.values()) > len(y)
    # ... prediction sees exactly the rows it is given
    test = np.arange(len(y)) % 4 == 0
    pipeline.fit(table.X[~test], y[~test])
    assert pipeline.predict(table.X[test]).shape == (int(test.sum()),)


def test_reproduce_scores_only_real_test_rows(results: dict[str, Any]) -> None:
    n = sum(PER_MOOD.values())
    assert set(results["schemes"]) == set(LABEL_SCHEMES)
    for entry in results["schemes"].values():
        assert entry["n_test"] == n // 5
        assert entry["n_train"] + entry["n_test"] == n
        for scores in entry["models"].values():
            assert np.sum(scores["confusion_matrix"]) == entry["n_test"]
            assert scores["report"]["macro avg"]["support"] == entry["n_test"]
    stacking = results["schemes"]["3-class"]["models"]["stacking"]
    assert stacking["report"]["macro avg"]["f1-score"] > 0.9  # separable classes
    low, high = stacking["bootstrap"]["f1"]
    assert 0.0 <= low <= high <= 1.0
    assert sorted(results["spread"]) == [0, 1]
    assert results["spread"][0]["f1"] == stacking["report"]["macro avg"]["f1-score"]


def test_render_markdown_has_the_tables(results: dict[str, Any]) -> None:
    text = render_markdown(results, command="python -m train.seed_report --seed 0")
    for needle in (
        "Table 1.", "Table 2.", "Table 3.", "| joyful |", "| macro avg |",
        "## 4-class scheme", "## binary scheme", "| macro precision | macro recall | macro F1 |",
        "| true \\ predicted | sad | calm | happy | energetic |",
        "| true \\ predicted | negative | positive |",
        "2024-11-27", "python -m train.seed_report --seed 0", "Split-to-split spread",
    ):  # fmt: skip
        assert needle in text, needle


def test_quadrant_mapping() -> None:
    assert SEED_TO_QUADRANT == {
        "happy": Quadrant.Q1, "energetic": Quadrant.Q1, "sad": Quadrant.Q3, "calm": Quadrant.Q4,
    }  # fmt: skip
    classes = ["calm", "energetic", "happy", "sad"]
    proba = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.0, 0.0]])
    quadrants = to_quadrant_probabilities(proba, classes)
    np.testing.assert_allclose(quadrants, [[0.5, 0.0, 0.4, 0.1], [0.0, 0.0, 0.0, 1.0]])


@pytest.mark.parametrize(
    ("proba", "classes"),
    [
        (np.ones((2, 3)) / 3, ["calm", "sad", "happy", "energetic"]),
        (np.ones((2, 2)) / 2, ["negative", "positive"]),
        (np.full((1, 2), np.nan), ["sad", "calm"]),
    ],
)
def test_quadrant_mapping_errors(proba: np.ndarray, classes: list[str]) -> None:
    with pytest.raises(ValueError):
        to_quadrant_probabilities(proba, classes)


def test_spotify_model_gives_quadrant_probabilities(table_path: Path) -> None:
    model = build_spotify_model(table_path, seed=0, n_trees=10)
    table = load_seed_table(table_path)
    assert sorted(model.classes_.tolist()) == ["calm", "energetic", "happy", "sad"]
    quadrants = to_quadrant_probabilities(model.predict_proba(table.X), model.classes_)
    assert quadrants.shape == (len(table.X), 4)
    np.testing.assert_allclose(quadrants.sum(axis=1), 1.0)
    assert np.all(quadrants[:, 1] == 0.0)


def test_spotify_model_saved_and_served(table_path: Path, tmp_path: Path) -> None:
    from mer_models.spotify import SpotifyFeatureModel
    from train.seed_report import save_spotify_model

    card_path = save_spotify_model(tmp_path, table_path, version="test", n_trees=5)
    model = SpotifyFeatureModel(card_path)
    assert model.card.kind == "spotify-ensemble"
    calm = dict(zip(SPOTIFY_FEATURES, load_seed_table(table_path).X[20], strict=True))
    probabilities = model.predict(calm)
    assert probabilities["Q2"] == 0.0
    assert sum(probabilities.values()) == pytest.approx(1.0)
    assert max(probabilities, key=probabilities.__getitem__) == "Q4"  # a calm row


def test_spotify_model_rejects_missing_features(table_path: Path, tmp_path: Path) -> None:
    from mer_models.errors import ParameterError
    from mer_models.spotify import SpotifyFeatureModel
    from train.seed_report import save_spotify_model

    model = SpotifyFeatureModel(save_spotify_model(tmp_path, table_path, version="t", n_trees=5))
    with pytest.raises(ParameterError, match="energy"):
        model.predict({"danceability": 0.5})


def test_mer_spotify_command(table_path: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from bot.cli import app
    from train.seed_report import save_spotify_model

    save_spotify_model(tmp_path, table_path, version="cli", n_trees=5)
    row = dict(zip(SPOTIFY_FEATURES, load_seed_table(table_path).X[0].tolist(), strict=True))
    runner = CliRunner()
    result = runner.invoke(app, ["spotify", json.dumps(row), "--models", str(tmp_path)])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["quadrant"] == "Q3" and answer["mood"] == "sad"  # row 0 is a sad track
    bad = runner.invoke(app, ["spotify", "{\"energy\": 0.5}", "--models", str(tmp_path)])
    assert bad.exit_code == 1
    assert bad.stderr.startswith("error: spotify features: missing Spotify audio features")
    empty = runner.invoke(app, ["spotify", "{}", "--models", str(tmp_path / "none")])
    assert empty.exit_code == 1 and "no Spotify-feature model" in empty.stderr
