"""python -m train's stages end to end on a tiny synthetic stand-in for the 4Q folder."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mer_models.engine import MoodEngine
from tests.synth import SR, mood_clip
from tests.tiny_models import TINY_CLDNN
from train.cldnn_train import TrainConfig
from train.data import DataMissingError, load_4q
from train.musicnn_head import run_musicnn
from train.pipeline import (
    SERVING,
    TRAINING_DATA,
    best_weights,
    load_data,
    macro_f1_rows,
    run_cldnn,
    run_ensemble,
    run_fusion,
    run_reference,
    run_robustness,
    ship,
    weight_grid,
)
from train.report import write_report

PER_QUADRANT_AND_FOLD = 2


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rows = []
    for q in ("Q1", "Q2", "Q3", "Q4"):
        (root / "4q" / "audio" / q).mkdir(parents=True)
        for fold in range(5):
            for i in range(PER_QUADRANT_AND_FOLD):
                song = f"MT{q}{fold}{i}"
                seed = 1000 * int(q[1]) + 10 * fold + i  # stable across runs
                sf.write(root / "4q" / "audio" / q / f"{song}.mp3",
                         mood_clip(q, seconds=12.0, seed=seed), SR, format="MP3")
                rows.append((song, q, f"artist {fold}-{i}", fold))
    with (root / "4q" / "splits.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["song_id", "quadrant", "artist", "fold"])
        writer.writerows(rows)
    rng = np.random.default_rng(0)
    with (root / "4q" / "features_official_top100.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["SongID", *(f"F{i}" for i in range(100)), "Quadrant"])
        for song, q, _, _ in rows:
            writer.writerow([song, *(rng.normal(int(q[1]), 1.0, 100).round(4)), q])
    return root


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match=r"splits\.csv"):
        load_4q(tmp_path)


def test_all_stages_on_tiny_data(fake_data: Path, tmp_path: Path) -> None:
    data = load_data(fake_data, cache_dir=tmp_path / "cache", workers=1)
    assert data.features.logmel.shape[:2] == (40, 5)
    run = tmp_path / "run"
    run.mkdir()
    small_grid = {"pca__n_components": [0.95], "stack__svm__C": [1.0]}
    ensemble = run_ensemble(data, run, n_jobs=1, grid=small_grid)
    # The synthetic quadrants differ in tempo, mode, brightness and noise: the descriptors
    # separate them (measured: 1.0); a broken split, label order or grid would not.
    assert ensemble["macro_f1_mean"] >= 0.9 and (run / "confusion_ensemble.png").is_file()
    cfg = replace(TrainConfig(), epochs=2, batch_size=16, patience=5, threads=1,
                  model=TINY_CLDNN)
    cldnn = run_cldnn(data, run, cfg)
    assert cldnn["onnx_max_abs_diff"] < 1e-4 and (run / "curves_cldnn.png").is_file()
    assert len(cldnn["folds"]) == 5
    # MSD only, to keep the test short, but cut like the shipped layout (5 windows, 2 patches
    # each); the tones of the synthetic quadrants differ clearly enough for the pretrained
    # embedding too (measured below).
    layout = {"networks": ["musicnn-msd-1"], "windows": 5, "patches_per_window": 2,
              "head": "logreg"}
    musicnn = run_musicnn(data.labels, data.folds, [c.song_id for c in data.clips], run,
                          root=fake_data, analysis=SERVING, training=TRAINING_DATA,
                          layout=layout, cache_dir=tmp_path / "musicnn", networks=("msd",),
                          augment=False)
    assert musicnn["macro_f1_mean"] >= 0.8 and (run / "oof_musicnn.npy").is_file()
    reference = run_reference(data, run, fake_data)
    assert reference["macro_f1_mean"] > 0.9  # the fake "official" features are separable
    fused = run_fusion(data, run)
    # Two epochs leave the tiny CLDNN near chance (measured 0.1): the nested weights must then
    # lean on the other models, and the fusion must not be worse than its best model.
    best = max(cldnn["macro_f1_mean"], ensemble["macro_f1_mean"], musicnn["macro_f1_mean"])
    assert fused["macro_f1_mean"] >= best - 0.05
    assert fused["kinds"] == ["cldnn", "ensemble", "musicnn"]
    assert fused["weights"]["cldnn"] <= 0.5
    assert sum(fused["weights"].values()) == pytest.approx(1.0, abs=0.002)  # 3 decimals each
    assert set(fused["subsets"]) == {"cldnn+ensemble", "cldnn+musicnn", "ensemble+musicnn"}
    robust = run_robustness(data, run, root=fake_data, musicnn_cache=tmp_path / "musicnn")
    assert robust["original (48k mono mp3)"]["fused"]["macro_f1"] >= 0.9
    assert set(robust["opus-96k-48k-stereo"]) == {"cldnn", "ensemble", "musicnn", "fused"}
    assert set(robust) == {"original (48k mono mp3)", "mp3-128k-44k-stereo",
                           "opus-96k-48k-stereo", "aac-128k-44k-stereo"}
    report = tmp_path / "MODEL_REPORT.md"
    report.write_text("# Model report\n\nprose\n\n<!-- generated:begin -->\nSTALE-TABLE\n"
                      "<!-- generated:end -->\n\nmore prose\n")
    write_report(run, report)
    text = report.read_text()
    assert "prose" in text and "more prose" in text and "STALE-TABLE" not in text
    assert "Fused (nested fusion weights)" in text and "Head on the musicnn embedding" in text
    assert "| CLDNN + ensemble + musicnn head |" in text
    weights = tmp_path / "weights"
    shipped = ship(run, weights)
    assert {p.suffix for p in shipped} == {".json", ".onnx", ".skops"}
    engine = MoodEngine(weights, threads=1)
    assert set(engine.versions) == {"cldnn", "ensemble", "musicnn"}
    weights_sum = sum(card.fusion_weight for card in engine.cards)
    assert weights_sum == pytest.approx(1.0)
    right = sum(engine.classify(next((fake_data / "4q" / "audio" / q).iterdir())).quadrant.value
                == q for q in ("Q1", "Q2", "Q3", "Q4"))
    assert right >= 3


def test_macro_f1_rows_is_sklearns_macro_f1() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 60)
    predictions = rng.integers(0, 4, (5, 60))
    predictions[1] = labels  # perfect
    predictions[2] = 3  # one class predicted
    labels_without_q3 = np.where(labels == 2, 0, labels)  # Q3 in neither labels nor row 3
    predictions[3] = np.where(predictions[3] == 2, 1, predictions[3])
    for y in (labels, labels_without_q3):
        expected = [f1_score(y, row, average="macro") for row in predictions]
        np.testing.assert_allclose(macro_f1_rows(y, predictions), expected, rtol=1e-12)


def _probabilities(labels: np.ndarray, signal: float, seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(0.0, 1.0, (len(labels), 4))
    logits[np.arange(len(labels)), labels] += signal
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


def test_fusion_weights_single_best_point_and_bagged() -> None:
    from sklearn.metrics import f1_score

    from mer_models.fusion import fuse

    labels = np.random.default_rng(1).integers(0, 4, 300)
    informative, weak, noise = (_probabilities(labels, s, seed) for s, seed in
                                ((2.0, 2), (0.7, 3), (0.0, 4)))
    models = [informative, weak, noise]
    # bags=0: the grid point an exhaustive search with scikit-learn finds (first of ties).
    grid = weight_grid(3)
    scores = [f1_score(labels, fuse(models, w.tolist()).argmax(1), average="macro")
              for w in grid]
    np.testing.assert_array_equal(best_weights(models, labels, bags=0),
                                  grid[int(np.argmax(scores))])
    bagged = best_weights(models, labels)
    assert bagged.sum() == pytest.approx(1.0) and (bagged >= 0).all()
    assert bagged[0] > 0.5 and bagged[2] < 0.15  # the noise gets (almost) nothing
    np.testing.assert_array_equal(bagged, best_weights(models, labels))  # seeded
    assert not np.array_equal(bagged, best_weights(models, labels, seed=1))


def test_augmented_copies_train_only_where_their_clip_may(fake_data: Path, tmp_path: Path
                                                          ) -> None:
    from train.musicnn_head import AUGMENTATIONS, SERVING_LAYOUT, augmented_embeddings, with_copies

    song_ids = ["MTQ100", "MTQ310"]
    copies = augmented_embeddings(fake_data, song_ids, SERVING_LAYOUT, SERVING,
                                  cache_dir=tmp_path)
    assert list(copies) == list(AUGMENTATIONS)
    size = 400 * len(SERVING_LAYOUT["networks"])  # mean and std of 200 units per network
    for name, x in copies.items():
        assert x.shape == (2, size) and np.isfinite(x).all(), name
    # Re-encoding changes the embedding a little, not into another clip's.
    assert not np.allclose(copies["opus-96k-48k-stereo"], copies["gain-12dB"])
    again = augmented_embeddings(fake_data, song_ids, SERVING_LAYOUT, SERVING,
                                 cache_dir=tmp_path)  # from the cache this time
    np.testing.assert_array_equal(again["aac-128k-44k-stereo"], copies["aac-128k-44k-stereo"])
    x_all, y_all, folds_all, original = with_copies(
        np.zeros((2, size)), np.array([0, 2]), np.array([0, 3]), list(copies.values()))
    assert x_all.shape == (12, size) and original.sum() == 2 and original[:2].all()
    assert (y_all == np.tile([0, 2], 6)).all() and (folds_all == np.tile([0, 3], 6)).all()


@pytest.mark.parametrize(("layout", "networks", "windows"), [
    ("serving", ["musicnn-msd-1", "musicnn-mtt-1"], 5), ("fast", ["musicnn-msd-1"], None)])
def test_musicnn_command_trains_the_layout_asked(fake_data: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, layout: str,
                                                 networks: list[str], windows: int | None
                                                 ) -> None:
    from typer.testing import CliRunner

    import train.__main__ as cli
    import train.musicnn_head as head

    # The command's features go to the test's folder, never the project's .cache.
    load = cli._data
    monkeypatch.setattr(cli, "_data", lambda root, cache=None: load(root, tmp_path / "cache"))
    seen: dict[str, object] = {}

    def fake_run(*args: object, **kwargs: object) -> dict[str, object]:
        seen.update(kwargs)
        return {"macro_f1_mean": 0.5, "macro_f1_std": 0.1, "final_params": {}}

    monkeypatch.setattr(head, "run_musicnn", fake_run)
    result = CliRunner().invoke(cli.app, ["musicnn", "--data", str(fake_data), "--run",
                                          str(tmp_path / "run"), "--layout", layout])
    assert result.exit_code == 0, result.output
    chosen = seen["layout"]
    assert isinstance(chosen, dict)
    assert chosen["networks"] == networks and chosen.get("windows") == windows


def test_musicnn_command_refuses_an_unknown_layout(fake_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from train.__main__ import app

    result = CliRunner().invoke(app, ["musicnn", "--data", str(fake_data), "--run",
                                      str(tmp_path / "run"), "--layout", "tiny"],
                                env={"COLUMNS": "200"})
    assert result.exit_code != 0
    assert "--layout must be one of serving, fast, got 'tiny'" in " ".join(result.output.split())


def test_cldnn_trained_elsewhere_from_a_pack(fake_data: Path, tmp_path: Path) -> None:
    """The lent-GPU path: pack here, train from the pack alone, import and score here."""
    from train.cldnn_pack import DB_RANGE, _split, load_pack, train_pack, write_pack
    from train.pipeline import CODECS, import_cldnn

    data = load_data(fake_data, cache_dir=tmp_path / "cache", workers=1)
    pack_path = tmp_path / "pack" / "pack.npz"
    opus = {"opus": CODECS["opus-96k-48k-stereo"]}
    info = write_pack(data, pack_path, workers=1, codecs=opus, codec_cache=tmp_path / "codec")
    assert info["windows"] == 40 * 5 + 40 and info["codec_windows"] == 40
    pack = load_pack(pack_path)
    originals = pack["source"] == 0
    exact = data.features.logmel.reshape(-1, 128, 216).astype(np.float32)
    coded = pack["x"][originals].astype(np.float32)
    assert np.array_equal(pack["clip"][originals], np.repeat(np.arange(40), 5))
    inside = (exact > DB_RANGE[0] + 5) & (exact < DB_RANGE[1])
    rms = float(np.sqrt(np.mean((coded - exact)[inside] ** 2)))
    assert 0 < rms < 2.5  # 8-bit JPEG at quality 85 (measured 1.7 dB on 4Q clips)
    # A codec window is the same clip and window re-encoded: close to its original window.
    first = np.flatnonzero(pack["source"] == 1)[0]
    clip, window = pack["clip"][first], pack["window"][first]
    original = exact[clip * 5 + window]
    assert np.corrcoef(pack["x"][first].astype(np.float32).ravel(), original.ravel())[0, 1] > 0.9

    some = np.isin(pack["folds"], [0, 1, 2])
    assert len(_split(pack, "plain", some)[0]) == 24 * 5  # the originals of 24 clips
    x, y = _split(pack, "augmented", some)
    assert len(x) == 24 * 5 + 24 and set(y) == {0, 1, 2, 3}  # and their codec windows

    cfg = replace(TrainConfig(), epochs=2, batch_size=32, patience=5, model=TINY_CLDNN)
    out = tmp_path / "results"
    summary = train_pack(pack_path, out, variants=["augmented"], cfg=cfg, device="cpu",
                         budget_s=600, jobs=2)
    augmented = summary["variants"]["augmented"]
    # Training folds: 3 of 5 (24 clips x 5 windows), plus one window per clip and codec.
    assert augmented["windows"] == [24 * 5 + 24] * 5
    assert tuple(augmented["config"]["gain_db"]) == (-12.0, 6.0) and augmented["final_epochs"] == 2
    assert len(augmented["approx_macro_f1"]) == 5

    run = tmp_path / "run"
    run.mkdir()
    metrics = import_cldnn(data, run, out, "augmented", version="7")
    assert len(metrics["folds"]) == 5 and metrics["variant"] == "augmented"
    assert metrics["onnx_max_abs_diff"] < 1e-4 and metrics["trained_on"] == "cpu"
    assert np.load(run / "oof_cldnn.npy").shape == (40, 4)
    assert (run / "models" / "mood-4q-cldnn-7.json").is_file()
    assert sorted(p.name for p in run.glob("cldnn_fold*.pt")) == [
        f"cldnn_fold{k}.pt" for k in range(5)]
    with pytest.raises(KeyError, match="no variant 'other'"):
        import_cldnn(data, run, out, "other")
    with pytest.raises(FileNotFoundError, match=r"summary\.json"):
        import_cldnn(data, run, tmp_path, "augmented")
    summary["song_ids_sha256"] = "0" * 64
    (out / "summary.json").write_text(__import__("json").dumps(summary))
    with pytest.raises(KeyError, match="other clips"):
        import_cldnn(data, run, out, "augmented")
