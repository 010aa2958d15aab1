"""The training stages: ensemble, CLDNN, reference, fusion, robustness, shipping.

Every stage writes into one run directory (``runs/<name>``): ``metrics.json`` per stage,
confusion matrices and curves as PNG, out-of-fold probabilities (``oof_*.npy``) that the
fusion stage reads, and the model artifacts with their cards under ``models/``.
"""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import f1_score

from mer_models.card import ModelCard, TrainingData
from mer_models.config import AnalysisConfig
from mer_models.features import clip_descriptors
from mer_models.fusion import fuse
from train.cldnn_train import TrainConfig, predict_windows, train_cldnn
from train.data import (
    CACHE_WINDOWS,
    DEFAULT_DATA_ROOT,
    Clip,
    FeatureSet,
    compute_features,
    load_4q,
    serving_windows,
)
from train.ensemble import build_ensemble, grid_search, save_ensemble
from train.export import cldnn_card, export_onnx
from train.metrics import per_fold, save_confusion_png, save_curves_png, write_json

logger = logging.getLogger(__name__)

SERVING = AnalysisConfig()
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "mer_models" / "weights"
TRAINING_DATA = TrainingData(
    dataset="4Q audio emotion dataset (720 of 900 clips), Panda, Malheiro & Paiva 2018",
    citation="R. Panda, R. Malheiro, R. P. Paiva, 'Novel audio features for music emotion "
             "recognition', IEEE Trans. Affective Computing 11(4), 2018",
    license="research use; the audio is not redistributed, only weights trained on it",
    n_clips=720,
    split="5 artist-disjoint folds (splits.csv); metrics are out-of-fold",
)


@dataclass(frozen=True)
class Data:
    """Clips and their cached features."""

    clips: list[Clip]
    features: FeatureSet

    @property
    def labels(self) -> NDArray[np.int64]:
        return self.features.labels

    @property
    def folds(self) -> NDArray[np.int64]:
        return self.features.folds

    def clip_descriptors(self) -> NDArray[np.float32]:
        """The ensemble's input: descriptors of the serving windows, averaged per clip."""
        index = serving_windows(CACHE_WINDOWS, SERVING.n_windows)
        return np.stack([clip_descriptors(d[index]) for d in self.features.descriptors])


def load_data(root: Path = DEFAULT_DATA_ROOT, **kwargs: Any) -> Data:
    """4Q clips and features (computed once, then from the cache)."""
    clips = load_4q(root)
    return Data(clips, compute_features(clips, SERVING.with_windows(CACHE_WINDOWS), **kwargs))


def _window_f1(p: NDArray[np.float32], y: NDArray[np.integer]) -> float:
    return float(f1_score(y, p.argmax(axis=1), average="macro"))


# --- ensemble ---------------------------------------------------------------------------------

def run_ensemble(data: Data, run_dir: Path, *, n_jobs: int = 2, version: str = "1",
                 grid: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """Grid search over the folds, out-of-fold probabilities, final model refit on all clips."""
    from sklearn.model_selection import PredefinedSplit, cross_val_predict

    x, y = data.clip_descriptors(), np.array([f"Q{i + 1}" for i in data.labels])
    search = grid_search(x, y, data.folds, n_jobs=n_jobs, grid=grid)
    best = search.best_estimator_
    oof = cross_val_predict(best, x, y, cv=PredefinedSplit(data.folds), method="predict_proba",
                            n_jobs=n_jobs)
    np.save(run_dir / "oof_ensemble.npy", oof)
    metrics = per_fold(data.labels, oof, data.folds)
    metrics["best_params"] = {k: v for k, v in search.best_params_.items()}
    metrics["grid_best_score"] = float(search.best_score_)
    write_json(metrics, run_dir / "metrics_ensemble.json")
    save_confusion_png(metrics["pooled"]["confusion"], run_dir / "confusion_ensemble.png",
                       "stacking ensemble, out-of-fold")
    save_ensemble(best, run_dir / "models", version=version, analysis=SERVING,
                  training=TRAINING_DATA, metrics=_card_metrics(metrics),
                  notes=f"best grid parameters: {metrics['best_params']}")
    return metrics


# --- CLDNN ------------------------------------------------------------------------------------

def _windows_of(data: Data, mask: NDArray[np.bool_]) -> tuple[NDArray[np.float16],
                                                             NDArray[np.int64]]:
    logmel = data.features.logmel[mask]
    n_windows = logmel.shape[1]
    return (logmel.reshape(-1, *logmel.shape[2:]),
            np.repeat(data.labels[mask], n_windows))


def clip_probabilities(model: Any, logmel: NDArray[np.floating]) -> NDArray[np.float32]:
    """Mean CLDNN probabilities over the serving windows of each clip."""
    index = serving_windows(logmel.shape[1], SERVING.n_windows)
    chosen = logmel[:, index]
    p = predict_windows(model, chosen.reshape(-1, *chosen.shape[2:]))
    return p.reshape(len(logmel), len(index), -1).mean(axis=1)


def run_cldnn(data: Data, run_dir: Path, cfg: TrainConfig, *, device: str = "cpu",
              version: str = "1", folds: list[int] | None = None) -> dict[str, Any]:
    """Cross-validate (each fold held out, the next one for early stopping), then train the
    final model on every clip for the median best epoch count, export it and write its card."""
    folds = folds if folds is not None else sorted(set(data.folds.tolist()))
    oof = np.zeros((len(data.labels), 4), dtype=np.float32)
    histories, best_epochs = {}, []
    for k in folds:
        valid_fold = (k + 1) % 5
        train_mask = (data.folds != k) & (data.folds != valid_fold)
        tx, ty = _windows_of(data, train_mask)
        vx, vy = _windows_of(data, data.folds == valid_fold)
        model, history = train_cldnn(tx, ty, vx, vy, cfg, score=_window_f1, device=device)
        torch_save(model, run_dir / f"cldnn_fold{k}.pt")
        oof[data.folds == k] = clip_probabilities(model, data.features.logmel[data.folds == k])
        histories[f"fold {k}"] = history
        best_epochs.append(int(np.argmax([h["valid_score"] for h in history])) + 1)
        logger.info("fold %d: macro-F1 %.3f", k, _window_f1(oof[data.folds == k],
                                                              data.labels[data.folds == k]))
    evaluated = np.isin(data.folds, folds)
    np.save(run_dir / "oof_cldnn.npy", oof)
    metrics = per_fold(data.labels[evaluated], oof[evaluated], data.folds[evaluated])
    metrics["best_epochs"] = best_epochs
    metrics["seconds_per_epoch"] = float(np.mean([h["seconds"] for hs in histories.values()
                                                  for h in hs]))
    metrics["config"] = cfg.to_dict()
    save_curves_png(histories, run_dir / "curves_cldnn.png")
    save_confusion_png(metrics["pooled"]["confusion"], run_dir / "confusion_cldnn.png",
                       "CLDNN, out-of-fold")
    final_epochs = max(2, int(np.median(best_epochs)))
    final_cfg = TrainConfig(**{**cfg.__dict__, "epochs": final_epochs})
    all_x, all_y = _windows_of(data, np.ones(len(data.labels), dtype=bool))
    model, history = train_cldnn(all_x, all_y, None, None, final_cfg, device=device)
    metrics["final_epochs"] = final_epochs
    write_json(metrics, run_dir / "metrics_cldnn.json")
    models = run_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    onnx_path = models / f"mood-4q-cldnn-{version}.onnx"
    metrics["onnx_max_abs_diff"] = export_onnx(model, onnx_path)
    cldnn_card(artifact=onnx_path, version=version, model=model, analysis=SERVING,
               training=TRAINING_DATA, metrics=_card_metrics(metrics),
               notes=f"train config: {final_cfg.to_dict()}").save(
        models / f"mood-4q-cldnn-{version}.json")
    write_json(metrics, run_dir / "metrics_cldnn.json")
    return metrics


def torch_save(model: Any, path: Path) -> None:
    """A checkpoint that carries its own config."""
    import torch

    torch.save({"config": model.config.to_dict(), "state": model.state_dict()}, path)


# --- reference --------------------------------------------------------------------------------

def run_reference(data: Data, run_dir: Path, root: Path = DEFAULT_DATA_ROOT) -> dict[str, Any]:
    """An SVM on the authors' top-100 features, tuned on the same folds."""
    from sklearn.model_selection import GridSearchCV, PredefinedSplit, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    table = root / "4q" / "features_official_top100.csv"
    with table.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = [c for c in reader.fieldnames or () if c not in ("SongID", "Quadrant")]
        rows = {r["SongID"]: [r[c] for c in columns] for r in reader}
    x = np.array([[float(v) for v in rows[c.song_id]] for c in data.clips])
    x = np.nan_to_num(x)
    svm = make_pipeline(StandardScaler(), SVC(kernel="rbf", class_weight="balanced"))
    search = GridSearchCV(svm, {"svc__C": [0.5, 1, 2, 4, 8], "svc__gamma": ["scale", 0.005]},
                          scoring="f1_macro", cv=PredefinedSplit(data.folds), n_jobs=2)
    search.fit(x, data.labels)
    predicted = cross_val_predict(search.best_estimator_, x, data.labels,
                                  cv=PredefinedSplit(data.folds))
    onehot = np.eye(4)[predicted]
    metrics = per_fold(data.labels, onehot, data.folds)
    metrics["best_params"] = search.best_params_
    write_json(metrics, run_dir / "metrics_reference.json")
    return metrics


# --- fusion -----------------------------------------------------------------------------------

def _best_weight(p_cldnn: NDArray[np.floating], p_ens: NDArray[np.floating],
                 labels: NDArray[np.integer]) -> float:
    grid = np.round(np.linspace(0, 1, 21), 2)
    scores = [f1_score(labels, fuse([p_cldnn, p_ens], [w, 1 - w]).argmax(1), average="macro")
              for w in grid]
    return float(grid[int(np.argmax(scores))])


def run_fusion(data: Data, run_dir: Path) -> dict[str, Any]:
    """Choose the CLDNN's fusion weight on out-of-fold probabilities.

    The reported figures are nested: each fold is fused with the weight chosen on the other
    four folds. The weight written into the cards is the one chosen on all five.
    """
    p_c, p_e = np.load(run_dir / "oof_cldnn.npy"), np.load(run_dir / "oof_ensemble.npy")
    folds, labels = data.folds, data.labels
    fused = np.zeros_like(p_c)
    chosen = {}
    for k in np.unique(folds):
        other = folds != k
        w = _best_weight(p_c[other], p_e[other], labels[other])
        chosen[int(k)] = w
        fused[folds == k] = fuse([p_c[folds == k], p_e[folds == k]], [w, 1 - w])
    weight = _best_weight(p_c, p_e, labels)
    np.save(run_dir / "oof_fused.npy", fused)
    metrics = per_fold(labels, fused, folds)
    metrics["weights_per_fold"] = chosen
    metrics["cldnn_weight"] = weight
    write_json(metrics, run_dir / "metrics_fused.json")
    save_confusion_png(metrics["pooled"]["confusion"], run_dir / "confusion_fused.png",
                       "fused, out-of-fold (nested weights)")
    for card_path in (run_dir / "models").glob("*.json"):
        card = ModelCard.load(card_path)
        card.fusion_weight = weight if card.kind == "cldnn" else round(1 - weight, 2)
        card.metrics["fused"] = _card_metrics(metrics)
        card.save(card_path)
    return metrics


# --- robustness -------------------------------------------------------------------------------

CODECS: dict[str, list[str]] = {
    "mp3-128k-44k-stereo": ["-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k",
                            "-f", "mp3"],
    "opus-96k-48k-stereo": ["-ar", "48000", "-ac", "2", "-c:a", "libopus", "-b:a", "96k",
                            "-f", "ogg"],
}


def run_robustness(data: Data, run_dir: Path, *, fold: int = 4) -> dict[str, Any]:
    """Re-encode one held-out fold with real-world codecs and re-score the fold's models."""
    import torch

    from mer_models.audio import load_windows
    from mer_models.features import extract_features
    from train.cldnn import Cldnn, CldnnConfig

    checkpoint = torch.load(run_dir / f"cldnn_fold{fold}.pt", weights_only=True)
    model = Cldnn(CldnnConfig.from_dict(checkpoint["config"]))
    model.load_state_dict(checkpoint["state"])
    mask = data.folds == fold
    x, y = data.clip_descriptors(), np.array([f"Q{i + 1}" for i in data.labels])
    params = json_load(run_dir / "metrics_ensemble.json")["best_params"]
    ensemble = build_ensemble().set_params(**params).fit(x[~mask], y[~mask])
    weight = json_load(run_dir / "metrics_fused.json")["cldnn_weight"]
    clips = [c for c, m in zip(data.clips, mask, strict=True) if m]
    results = {}
    for name, args in {"original (48k mono mp3)": None, **CODECS}.items():
        logmels, descriptors = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for clip in clips:
                path = clip.path
                if args is not None:
                    path = Path(tmp) / f"{clip.song_id}.{args[-1]}"
                    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i",
                                    str(clip.path), *args, str(path)], check=True)
                feats = extract_features(load_windows(path, SERVING).windows, SERVING)
                logmels.append(feats.logmel)
                descriptors.append(clip_descriptors(feats.descriptors))
        p_c = clip_probabilities(model, np.stack(logmels))
        p_e = ensemble.predict_proba(np.stack(descriptors))
        labels = data.labels[mask]
        results[name] = {
            "cldnn": per_fold(labels, p_c, np.zeros_like(labels))["pooled"],
            "ensemble": per_fold(labels, p_e, np.zeros_like(labels))["pooled"],
            "fused": per_fold(labels, fuse([p_c, p_e], [weight, 1 - weight]),
                              np.zeros_like(labels))["pooled"],
        }
    write_json(results, run_dir / "metrics_robustness.json")
    return results


def json_load(path: Path) -> Any:
    """Read a JSON file."""
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def _card_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("macro_f1", "accuracy", "valence_accuracy", "arousal_accuracy")
    out: dict[str, Any] = {}
    for key in keys:
        out[f"cv_{key}_mean"] = round(metrics[f"{key}_mean"], 4)
        out[f"cv_{key}_std"] = round(metrics[f"{key}_std"], 4)
    out["cv_folds"] = {str(k): round(v["macro_f1"], 4) for k, v in metrics["folds"].items()}
    return out


def ship(run_dir: Path, weights_dir: Path = WEIGHTS_DIR) -> list[Path]:
    """Copy a run's models and cards into the package's weights folder (replacing old ones)."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    for old in weights_dir.glob("mood-4q-*"):
        old.unlink()
    shipped = []
    for path in sorted((run_dir / "models").iterdir()):
        shutil.copy2(path, weights_dir / path.name)
        shipped.append(weights_dir / path.name)
    for card in weights_dir.glob("*.json"):  # a copy that does not verify must not ship
        ModelCard.load(card).verify(card)
    return shipped
