"""The training stages: ensemble, CLDNN, reference, fusion, robustness, shipping.

Every stage writes into one run directory (``runs/<name>``): ``metrics.json`` per stage,
confusion matrices and curves as PNG, out-of-fold probabilities (``oof_*.npy``) that the
fusion stage reads, and the model artifacts with their cards under ``models/``.
"""

from __future__ import annotations

import csv
import itertools
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mer_models.card import ModelCard, TrainingData
from mer_models.config import AnalysisConfig
from mer_models.features import clip_descriptors
from mer_models.fusion import fuse
from train.cldnn_train import (
    TrainConfig,
    best_epoch,
    final_epochs,
    predict_windows,
    train_cldnn,
    window_f1,
)
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
from train.feedback import FeedbackClips, fold_splits, load_feedback, out_of_fold
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
    """Clips and their cached features, and the users' clips that only train
    (:mod:`train.feedback`; ``labels``, ``folds`` and the out-of-fold files cover ``clips``)."""

    clips: list[Clip]
    features: FeatureSet
    feedback: FeedbackClips | None = None

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

    def feedback_descriptors(self) -> NDArray[np.float32]:
        """The ensemble's input for the feedback clips, as :meth:`clip_descriptors`."""
        assert self.feedback is not None
        index = serving_windows(CACHE_WINDOWS, SERVING.n_windows)
        return np.stack([clip_descriptors(d[index]) for d in self.feedback.descriptors])


def load_data(root: Path = DEFAULT_DATA_ROOT, **kwargs: Any) -> Data:
    """4Q clips and features (computed once, then from the cache)."""
    clips = load_4q(root)
    return Data(clips, compute_features(clips, SERVING.with_windows(CACHE_WINDOWS), **kwargs))


def with_feedback(data: Data, path: Path, *, min_votes: int = 1, **kwargs: Any) -> Data:
    """``data`` with the usable clips of a feedback export (:func:`train.feedback.load_feedback`;
    ``kwargs``: ``cache_dir``, ``workers``)."""
    feedback = load_feedback(path, data.clips, min_votes=min_votes,
                             config=SERVING.with_windows(CACHE_WINDOWS), **kwargs)
    return replace(data, feedback=feedback)


def _extra(data: Data) -> FeedbackClips | None:
    """The feedback clips to train on, None when there are none."""
    return data.feedback if data.feedback is not None and len(data.feedback) else None


def _record_feedback(data: Data, metrics: dict[str, Any]) -> TrainingData:
    """Note the feedback used in ``metrics``; the card's description of the training data."""
    if data.feedback is None:
        return TRAINING_DATA
    metrics["feedback"] = data.feedback.summary()
    return data.feedback.training_data(TRAINING_DATA)


# --- ensemble ---------------------------------------------------------------------------------

def run_ensemble(data: Data, run_dir: Path, *, n_jobs: int = 2, version: str = "1",
                 grid: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """Grid search over the folds, out-of-fold probabilities, final model refit on all clips."""
    from sklearn.model_selection import PredefinedSplit, cross_val_predict

    x, y = data.clip_descriptors(), np.array([f"Q{i + 1}" for i in data.labels])
    extra = _extra(data)
    if extra is None:
        search = grid_search(x, y, data.folds, n_jobs=n_jobs, grid=grid)
        best = search.best_estimator_
        oof = cross_val_predict(best, x, y, cv=PredefinedSplit(data.folds),
                                method="predict_proba", n_jobs=n_jobs)
    else:  # the users' clips train every fold they may, and the final model
        splits = fold_splits(data.folds, extra.blocked)
        x_all = np.concatenate([x, data.feedback_descriptors()])
        y_all = np.concatenate([y, [f"Q{i + 1}" for i in extra.labels]])
        search = grid_search(x_all, y_all, data.folds, n_jobs=n_jobs, grid=grid, cv=splits)
        best = search.best_estimator_
        oof = out_of_fold(best, x_all, y_all, splits, n_jobs=n_jobs)[: len(x)]
    np.save(run_dir / "oof_ensemble.npy", oof)
    metrics = per_fold(data.labels, oof, data.folds)
    metrics["best_params"] = {k: v for k, v in search.best_params_.items()}
    metrics["grid_best_score"] = float(search.best_score_)
    training = _record_feedback(data, metrics)
    write_json(metrics, run_dir / "metrics_ensemble.json")
    save_confusion_png(metrics["pooled"]["confusion"], run_dir / "confusion_ensemble.png",
                       "stacking ensemble, out-of-fold")
    save_ensemble(best, run_dir / "models", version=version, analysis=SERVING,
                  training=training, metrics=card_metrics(metrics),
                  notes=f"best grid parameters: {metrics['best_params']}")
    return metrics


# --- CLDNN ------------------------------------------------------------------------------------

def _windows_of(data: Data, mask: NDArray[np.bool_]) -> tuple[NDArray[np.float16],
                                                             NDArray[np.int64]]:
    logmel = data.features.logmel[mask]
    n_windows = logmel.shape[1]
    return (logmel.reshape(-1, *logmel.shape[2:]),
            np.repeat(data.labels[mask], n_windows))


def _with_feedback_windows(data: Data, x: NDArray[np.float16], y: NDArray[np.int64],
                           held_out: set[int] | None) -> tuple[NDArray[np.float16],
                                                               NDArray[np.int64]]:
    """Training windows plus those of the feedback clips that may train for ``held_out``
    folds (None: every clip, for the final model)."""
    extra = _extra(data)
    if extra is None:
        return x, y
    mask = extra.allowed(held_out or set())
    logmel = extra.logmel[mask]
    return (np.concatenate([x, logmel.reshape(-1, *logmel.shape[2:])]),
            np.concatenate([y, np.repeat(extra.labels[mask], logmel.shape[1])]))


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
    fold_models, histories = {}, {}
    for k in folds:
        valid_fold = (k + 1) % 5
        train_mask = (data.folds != k) & (data.folds != valid_fold)
        tx, ty = _with_feedback_windows(data, *_windows_of(data, train_mask), {k, valid_fold})
        vx, vy = _windows_of(data, data.folds == valid_fold)
        fold_models[k], histories[k] = train_cldnn(tx, ty, vx, vy, cfg, score=window_f1,
                                                   device=device)
    final_cfg = replace(cfg, epochs=final_epochs(list(histories.values())))
    all_x, all_y = _with_feedback_windows(
        data, *_windows_of(data, np.ones(len(data.labels), dtype=bool)), None)
    model, _ = train_cldnn(all_x, all_y, None, None, final_cfg, device=device)
    return finish_cldnn(data, run_dir, fold_models, histories, model, final_cfg,
                        version=version)


def finish_cldnn(data: Data, run_dir: Path, fold_models: dict[int, Any],
                 histories: dict[int, list[dict[str, float]]], final: Any,
                 final_cfg: TrainConfig, *, version: str = "1",
                 extra: dict[str, Any] | None = None, note: str = "") -> dict[str, Any]:
    """Out-of-fold probabilities of the fold models on the cached windows, metrics, curves,
    the final model's ONNX export and card: the end of :func:`run_cldnn` and of
    :func:`import_cldnn`."""
    oof = np.zeros((len(data.labels), 4), dtype=np.float32)
    for k, model in fold_models.items():
        torch_save(model, run_dir / f"cldnn_fold{k}.pt")
        oof[data.folds == k] = clip_probabilities(model, data.features.logmel[data.folds == k])
        logger.info("fold %d: macro-F1 %.3f", k, window_f1(oof[data.folds == k],
                                                              data.labels[data.folds == k]))
    evaluated = np.isin(data.folds, list(fold_models))
    np.save(run_dir / "oof_cldnn.npy", oof)
    metrics = per_fold(data.labels[evaluated], oof[evaluated], data.folds[evaluated])
    metrics["best_epochs"] = [best_epoch(histories[k]) for k in fold_models]
    metrics["seconds_per_epoch"] = float(np.mean([h["seconds"] for hs in histories.values()
                                                  for h in hs]))
    metrics["config"] = final_cfg.to_dict()
    metrics.update(extra or {})
    training = _record_feedback(data, metrics)
    save_curves_png({f"fold {k}": h for k, h in histories.items()},
                    run_dir / "curves_cldnn.png")
    save_confusion_png(metrics["pooled"]["confusion"], run_dir / "confusion_cldnn.png",
                       "CLDNN, out-of-fold")
    metrics["final_epochs"] = final_cfg.epochs
    models = run_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    onnx_path = models / f"mood-4q-cldnn-{version}.onnx"
    metrics["onnx_max_abs_diff"] = export_onnx(final, onnx_path)
    cldnn_card(artifact=onnx_path, version=version, model=final, analysis=SERVING,
               training=training, metrics=card_metrics(metrics),
               notes=f"{note}train config: {final_cfg.to_dict()}").save(
        models / f"mood-4q-cldnn-{version}.json")
    write_json(metrics, run_dir / "metrics_cldnn.json")
    return metrics


def import_cldnn(data: Data, run_dir: Path, results: Path, variant: str, *,
                 version: str = "1") -> dict[str, Any]:
    """Finish (:func:`finish_cldnn`) the checkpoints of ``variant`` that
    ``python -m train.cldnn_pack`` trained elsewhere, scored here on the exact cached windows.

    Raises
    ------
    FileNotFoundError
        ``results`` holds no checkpoint of ``variant`` or no ``summary.json``.
    KeyError
        A fold or the final model is missing, or the pack was of other clips.
    """
    import json

    from train.cldnn import Cldnn
    from train.cldnn_pack import VARIANTS, read_results, song_ids_digest

    summary_path = results / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} not found")
    summary = json.loads(summary_path.read_text())
    if variant not in summary["variants"]:
        raise KeyError(f"{results} holds no variant {variant!r} "
                       f"(it holds {', '.join(summary['variants'])})")
    if summary.get("song_ids_sha256") != song_ids_digest(data.features.song_ids):
        raise KeyError(f"{results} was trained on other clips than the cached ones")
    checkpoints = read_results(results, variant)

    def model(name: str) -> Any:
        if name not in checkpoints:
            raise KeyError(f"{results}: checkpoint {name!r} missing")
        return Cldnn.from_checkpoint(checkpoints[name])

    folds = sorted(set(data.folds.tolist()))
    fold_models = {k: model(f"{variant}-fold{k}") for k in folds}
    histories = {k: checkpoints[f"{variant}-fold{k}"]["history"] for k in folds}
    info = summary["variants"][variant]
    cfg = TrainConfig.from_dict(info["config"])
    cfg = replace(cfg, epochs=info["final_epochs"])
    note = (f"trained on {summary['device']} (torch {summary['torch']}) by python -m "
            f"train.cldnn_pack, variant {variant!r} "
            f"({'with' if VARIANTS[variant]['codecs'] else 'without'} MP3/Opus/AAC windows), "
            "from 8-bit JPEG-coded windows; "
            "out-of-fold figures on the exact windows. ")
    return finish_cldnn(data, run_dir, fold_models, histories, model(f"{variant}-final"), cfg,
                        version=version, note=note,
                        extra={"trained_on": summary["device"], "variant": variant,
                               "pack_seconds": summary["seconds"]})


def torch_save(model: Any, path: Path) -> None:
    """A checkpoint that carries its own config."""
    import torch

    torch.save(model.checkpoint(), path)


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

#: The fused kinds, in the engine's order (:data:`mer_models.engine.LOADERS`); a run fuses
#: those whose ``oof_<kind>.npy`` it holds.
FUSED_KINDS = ("cldnn", "ensemble", "musicnn")
#: Step of the weight grid on the simplex (weights are multiples of it summing to 1).
WEIGHT_STEP = 0.05
#: Bootstrap resamples of the clips over which the best grid point is found; the chosen
#: weights are the mean of their picks. The single best point of the whole grid is a fragile
#: choice: near-ties abound (a 0.0008 change in the head's probabilities moved one fold's
#: weights and the nested figure by 0.009), and averaging the picks halves the spread of the
#: nested figure over 50 combinations of model trainings (sd 0.0055 -> 0.0032, same mean;
#: docs/MODEL_REPORT.md, "Choosing the fusion weights").
FUSION_BAGS = 50


def weight_grid(n_models: int, step: float = WEIGHT_STEP) -> NDArray[np.float64]:
    """Every weight vector of ``n_models`` non-negative multiples of ``step`` summing to 1."""
    units = round(1 / step)
    grid = [c for c in itertools.product(range(units + 1), repeat=n_models) if sum(c) == units]
    return np.array(grid, dtype=np.float64) / units


def grid_predictions(probabilities: list[NDArray[np.floating]], grid: NDArray[np.float64]
                     ) -> NDArray[np.intp]:
    """The fused class of every clip for every weight vector of ``grid``: shape (n_grid, n)."""
    predictions: NDArray[np.intp] = np.einsum("gm,mnc->gnc", grid,
                                              np.stack(probabilities)).argmax(2)
    return predictions


def macro_f1_rows(labels: NDArray[np.integer], predictions: NDArray[np.integer]
                  ) -> NDArray[np.float64]:
    """Macro-F1 of every row of ``predictions`` against ``labels``, in one pass.

    The same figure as ``sklearn.metrics.f1_score(labels, row, average="macro")``: classes
    absent from both the labels and a row's predictions do not count in that row's mean.

    Parameters
    ----------
    labels : ndarray of int, shape (n,)
        True class indices.
    predictions : ndarray of int, shape (n_rows, n)
        Predicted class indices, one row per candidate.

    Returns
    -------
    ndarray, shape (n_rows,)
    """
    n_classes = int(max(labels.max(), predictions.max())) + 1
    rows = np.arange(len(predictions))[:, None]
    cells = (rows * n_classes + labels[None, :]) * n_classes + predictions
    confusion = np.bincount(cells.ravel(), minlength=len(predictions) * n_classes ** 2
                            ).reshape(len(predictions), n_classes, n_classes)
    tp = np.diagonal(confusion, axis1=1, axis2=2)
    true, predicted = confusion.sum(2), confusion.sum(1)
    denominator = true + predicted
    present = denominator > 0
    f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=present)
    return f1.sum(1) / present.sum(1)


def best_weights(probabilities: list[NDArray[np.floating]], labels: NDArray[np.integer],
                 *, bags: int = FUSION_BAGS, seed: int = 0) -> NDArray[np.float64]:
    """The fusion weights with the highest macro-F1 of the fused probabilities.

    Parameters
    ----------
    probabilities : list of ndarray, each shape (n, n_classes)
        One array of out-of-fold probabilities per model.
    labels : ndarray of int, shape (n,)
    bags : int
        With 0, the best point of :func:`weight_grid`. Otherwise the mean of the best points
        of ``bags`` bootstrap resamples of the clips (see :data:`FUSION_BAGS`).
    seed : int
        Seed of the resampling.

    Returns
    -------
    ndarray, shape (n_models,)
        Non-negative weights summing to 1.
    """
    grid = weight_grid(len(probabilities))
    predictions = grid_predictions(probabilities, grid)
    if bags == 0:
        return grid[int(np.argmax(macro_f1_rows(labels, predictions)))]
    rng = np.random.default_rng(seed)
    picks = []
    for _ in range(bags):
        sample = rng.integers(0, len(labels), len(labels))
        picks.append(grid[int(np.argmax(macro_f1_rows(labels[sample],
                                                      predictions[:, sample])))])
    weights: NDArray[np.float64] = np.mean(picks, axis=0)
    return weights


def nested_fusion(probabilities: list[NDArray[np.floating]], labels: NDArray[np.integer],
                  folds: NDArray[np.integer], *, bags: int = FUSION_BAGS
                  ) -> tuple[NDArray[np.float64], dict[int, list[float]]]:
    """Fused out-of-fold probabilities, each fold with the weights chosen on the other four
    (:func:`best_weights` with ``bags``)."""
    fused = np.zeros(np.shape(probabilities[0]), dtype=np.float64)
    chosen = {}
    for k in np.unique(folds):
        other = folds != k
        w = best_weights([p[other] for p in probabilities], labels[other], bags=bags)
        chosen[int(k)] = [round(float(v), 3) for v in w]
        fused[folds == k] = fuse([p[folds == k] for p in probabilities], w.tolist())
    return fused, chosen


def run_fusion(data: Data, run_dir: Path) -> dict[str, Any]:
    """Choose the fusion weights of the run's models on their out-of-fold probabilities.

    The reported figures are nested: each fold is fused with the weights chosen on the other
    four folds. The weights written into the cards are the ones chosen on all five. Every
    subset of two or more models is scored the same way, so the report can say what each
    model adds.
    """
    kinds = [k for k in FUSED_KINDS if (run_dir / f"oof_{k}.npy").is_file()]
    if len(kinds) < 2:
        raise FileNotFoundError(f"{run_dir}: fusion needs the out-of-fold probabilities of two "
                                f"models or more (oof_<kind>.npy for {FUSED_KINDS})")
    oof = {k: np.load(run_dir / f"oof_{k}.npy") for k in kinds}
    folds, labels = data.folds, data.labels
    fused, chosen = nested_fusion([oof[k] for k in kinds], labels, folds)
    weights = dict(zip(kinds, (round(float(w), 3) for w in
                               best_weights([oof[k] for k in kinds], labels)), strict=True))
    np.save(run_dir / "oof_fused.npy", fused)
    metrics = per_fold(labels, fused, folds)
    metrics["kinds"] = kinds
    metrics["weights_per_fold"] = chosen
    metrics["weights"] = weights
    metrics["subsets"] = {}
    for size in range(2, len(kinds)):
        for subset in itertools.combinations(kinds, size):
            p, _ = nested_fusion([oof[k] for k in subset], labels, folds)
            m = per_fold(labels, p, folds)
            metrics["subsets"]["+".join(subset)] = {
                key: round(m[key], 4) for key in ("macro_f1_mean", "macro_f1_std",
                                                  "valence_accuracy_mean",
                                                  "arousal_accuracy_mean")}
    write_json(metrics, run_dir / "metrics_fused.json")
    save_confusion_png(metrics["pooled"]["confusion"], run_dir / "confusion_fused.png",
                       "fused, out-of-fold (nested weights)")
    for card_path in (run_dir / "models").glob("mood-4q-*.json"):
        card = ModelCard.load(card_path)
        if card.kind in weights:
            card.fusion_weight = weights[card.kind]
            card.metrics["fused"] = card_metrics(metrics)
            card.save(card_path)
    return metrics


# --- robustness -------------------------------------------------------------------------------

CODECS: dict[str, list[str]] = {
    "mp3-128k-44k-stereo": ["-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k",
                            "-f", "mp3"],
    "opus-96k-48k-stereo": ["-ar", "48000", "-ac", "2", "-c:a", "libopus", "-b:a", "96k",
                            "-f", "ogg"],
    "aac-128k-44k-stereo": ["-ar", "44100", "-ac", "2", "-c:a", "aac", "-b:a", "128k",
                            "-f", "adts"],
}


def run_robustness(data: Data, run_dir: Path, *, fold: int = 4, root: Path = DEFAULT_DATA_ROOT,
                   musicnn_cache: Path | None = None) -> dict[str, Any]:
    """Re-encode one held-out fold with real-world codecs and re-score the fold's models.

    Every model of the run's fusion is refitted (or reloaded, for the CLDNN) on the other
    folds, then scored on the original clips of ``fold`` and on each re-encoding, alone and
    fused with the run's weights.
    """
    import torch

    from mer_models.audio import load_window_pair
    from mer_models.features import extract_features
    from train.cldnn import Cldnn

    fusion = json_load(run_dir / "metrics_fused.json")
    weights: dict[str, float] = fusion["weights"]
    mask = data.folds == fold
    labels = data.labels[mask]
    predictors: dict[str, Any] = {}
    if "cldnn" in weights:
        cldnn = Cldnn.from_checkpoint(torch.load(run_dir / f"cldnn_fold{fold}.pt",
                                                 weights_only=True))
        predictors["cldnn"] = lambda f: clip_probabilities(cldnn, np.stack(f["logmel"]))
    if "ensemble" in weights:
        x, y = data.clip_descriptors(), np.array([f"Q{i + 1}" for i in data.labels])
        params = json_load(run_dir / "metrics_ensemble.json")["best_params"]
        ensemble = build_ensemble().set_params(**params).fit(x[~mask], y[~mask])
        predictors["ensemble"] = lambda f: ensemble.predict_proba(np.stack(f["descriptors"]))
    embedder = None
    if "musicnn" in weights:
        embedder, head = _musicnn_fold_head(data, run_dir, fold, root, musicnn_cache)
        predictors["musicnn"] = lambda f: head.predict_proba(np.stack(f["embedding"]))
    clips = [c for c, m in zip(data.clips, mask, strict=True) if m]
    results: dict[str, Any] = {}
    for name, args in {"original (48k mono mp3)": None, **CODECS}.items():
        inputs: dict[str, list[Any]] = {"logmel": [], "descriptors": [], "embedding": []}
        with tempfile.TemporaryDirectory() as tmp:
            for clip in clips:
                path = clip.path if args is None else encode(clip.path, Path(tmp), args)
                audio, wide = load_window_pair(
                    path, SERVING, SERVING if embedder is None else embedder.analysis(SERVING))
                feats = extract_features(audio.windows, SERVING)
                inputs["logmel"].append(feats.logmel)
                inputs["descriptors"].append(clip_descriptors(feats.descriptors))
                if embedder is not None:
                    inputs["embedding"].append(embedder.embed(wide, SERVING.sample_rate))
        probabilities = {kind: predict(inputs) for kind, predict in predictors.items()}
        zeros = np.zeros_like(labels)
        results[name] = {kind: per_fold(labels, p, zeros)["pooled"]
                         for kind, p in probabilities.items()}
        results[name]["fused"] = per_fold(
            labels, fuse(list(probabilities.values()), [weights[k] for k in probabilities]),
            zeros)["pooled"]
    write_json(results, run_dir / "metrics_robustness.json")
    return results


def encode(path: Path, folder: Path, args: list[str]) -> Path:
    """``path`` re-encoded by ffmpeg with ``args`` (codec options, ending with the format)."""
    out = folder / f"{path.stem}.{args[-1]}"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(path), *args,
                    str(out)], check=True)
    return out


def _musicnn_fold_head(data: Data, run_dir: Path, fold: int, root: Path,
                       cache_dir: Path | None) -> tuple[Any, Any]:
    """The serving embedder and a musicnn head fitted on every fold but ``fold``."""
    from sklearn.base import clone

    from mer_models.musicnn import OnnxMusicnn
    from mer_models.musicnn_head import MusicnnEmbedder
    from train.musicnn_embed import CACHE_DIR, _heads
    from train.musicnn_head import training_embeddings, with_copies

    metrics = json_load(run_dir / "metrics_musicnn.json")
    layout = metrics["layout"]
    params = next(c for c in metrics["chosen"] if c["fold"] == fold)
    estimator, _ = _heads()[layout["head"]]
    head = clone(estimator).set_params(**{k: v for k, v in params.items() if "__" in k})
    x, extra = training_embeddings(
        root, [c.song_id for c in data.clips], layout, SERVING, cache_dir=cache_dir or CACHE_DIR,
        networks=tuple(metrics["extracted"]), augment=bool(metrics.get("augmentations")))
    copies = list(extra.values())
    x_all, y_all, folds_all, _ = with_copies(x, data.labels, data.folds, copies)
    head.fit(x_all[folds_all != fold], y_all[folds_all != fold])
    networks = [OnnxMusicnn(WEIGHTS_DIR / f"{n}.json", threads=1, prefer_gpu=False)
                for n in layout["networks"]]
    return MusicnnEmbedder.from_layout(networks, layout), head


def json_load(path: Path) -> Any:
    """Read a JSON file."""
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def card_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
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
