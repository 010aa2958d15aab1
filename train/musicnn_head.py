"""Train the shipped musicnn mood head: cross-validated, then fitted on every clip.

``python -m train musicnn`` (stage of :mod:`train.__main__`) runs :func:`run_musicnn`:

1. the embeddings of the 720 clips come from :func:`train.musicnn_embed.extract` (computed
   once, then cached in ``.cache/musicnn``), pooled with the serving layout (3 windows, the
   networks and patches per window of :data:`SERVING_LAYOUT`);
2. out-of-fold probabilities over the five artist-disjoint folds, the regularisation chosen
   by a grid search inside the training folds (:func:`train.musicnn_embed.cross_validate`),
   go to ``oof_musicnn.npy`` for the fusion stage, with ``metrics_musicnn.json``;
3. the final head is grid-searched over all five folds, refitted on every clip and written as
   ``models/mood-4q-musicnn-<version>.skops`` and its ONNX conversion with its card, beside
   copies of the networks' ONNX files and cards (the engine loads them from the head's folder).

With ``augment`` (the default of ``python -m train musicnn``), every training fold also holds
each clip as users feed it (:data:`AUGMENTATIONS`: MP3, Opus and AAC through ffmpeg, and
gain changes); the held-out fold is always the original clips, so the figures stay comparable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mer_models.audio import load_windows
from mer_models.card import ModelCard, TrainingData, sha256_file
from mer_models.config import AnalysisConfig
from mer_models.musicnn import OnnxMusicnn
from mer_models.musicnn_head import MusicnnEmbedder
from train.export import add_onnx, library_versions
from train.feedback import FeedbackClips, fold_splits
from train.metrics import per_fold, save_confusion_png, write_json
from train.musicnn_embed import (
    CACHE_DIR,
    NETWORKS,
    WEIGHTS,
    clip_embeddings,
    cross_validate,
    extract,
)
from train.pipeline import CODECS, card_metrics, encode

logger = logging.getLogger(__name__)

#: What the shipped head sees: the networks (concatenated in this order), the analysis windows
#: its patches are cut from, patches per window, and the head. Chosen with the speed/accuracy
#: table of docs/BENCHMARKS.md: MSD+MTT on 5 windows, 2 patches each, fuses to 0.777 against
#: 0.752 for MSD alone on the serving windows with one patch each (:data:`FAST_LAYOUT`, the
#: first shipped layout), at 6x the embedding's cost.
SERVING_LAYOUT: dict[str, Any] = {"networks": ["musicnn-msd-1", "musicnn-mtt-1"],
                                  "windows": 5, "patches_per_window": 2, "head": "logreg"}
#: The first shipped layout: 3 network runs per clip instead of 20 (0.752 fused).
FAST_LAYOUT: dict[str, Any] = {"networks": ["musicnn-msd-1"], "patches_per_window": 1,
                               "head": "logreg"}
#: Training-time copies of every clip: the encodings users feed the bot (ffmpeg arguments,
#: :data:`train.pipeline.CODECS`) and level changes (dB, applied to the decoded audio).
AUGMENTATIONS: dict[str, list[str] | float] = {**CODECS, "gain-12dB": -12.0, "gain+6dB": 6.0}


def layout_embeddings(cache: dict[str, Any], layout: dict[str, Any],
                      n_windows: int) -> np.ndarray:
    """Clip embeddings (n_clips, 400 per network) of a layout, from the cached patches.

    The patches come from the layout's ``windows`` when it names them, else from
    ``n_windows`` (the serving windows)."""
    keys = [name.split("-")[1] for name in layout["networks"]]  # "musicnn-msd-1" -> "msd"
    windows = layout.get("windows", n_windows)
    return np.concatenate([clip_embeddings(cache[k], windows, layout["patches_per_window"])
                           for k in keys], axis=1)


def run_musicnn(labels: np.ndarray, folds: np.ndarray, song_ids: list[str], run_dir: Path,
                *, root: Path, analysis: AnalysisConfig, training: TrainingData,
                layout: dict[str, Any] | None = None, version: str = "1",
                cache_dir: Path = CACHE_DIR, networks: tuple[str, ...] = NETWORKS,
                augment: bool = True, feedback: FeedbackClips | None = None) -> dict[str, Any]:
    """Cross-validate the head, fit the final one, write its card; return the metrics.

    Parameters
    ----------
    labels, folds : ndarray, shape (n_clips,)
        Quadrant index (0-3) and fold of every clip, in ``song_ids`` order.
    song_ids : list of str
        The clips, in the order of the other stages' out-of-fold files.
    run_dir : path
        The run directory (``oof_musicnn.npy``, ``metrics_musicnn.json``, ``models/``).
    root : path
        The data folder (``4q/splits.csv`` and the audio).
    analysis : AnalysisConfig
        The serving analysis settings, recorded in the card.
    training : TrainingData
        The card's description of the training data.
    layout : dict, optional
        Networks, patches per window and head (default :data:`SERVING_LAYOUT`).
    version : str
        Version of the written model.
    cache_dir, networks : optional
        Where the embeddings are cached and which networks to extract
        (:func:`train.musicnn_embed.extract`); ``networks`` must cover the layout's.
    augment : bool
        Add the :data:`AUGMENTATIONS` of every training clip to the training folds.
    feedback : FeedbackClips, optional
        The users' clips (:mod:`train.feedback`): they join the training folds they may
        (never a held-out fold) and the final head, without augmented copies.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, PredefinedSplit

    from train.musicnn_embed import _heads

    layout = dict(layout or SERVING_LAYOUT)
    x, extra = training_embeddings(root, song_ids, layout, analysis, cache_dir=cache_dir,
                                   networks=networks, augment=augment)
    x_all, y_all, folds_all, original = with_copies(x, labels, folds, list(extra.values()))
    cv: Any = PredefinedSplit(folds_all)
    if feedback is not None and len(feedback):
        x_users = feedback_embeddings(feedback, layout, analysis)
        oof_all, chosen = _cross_validate_with(x_all, y_all, folds_all, layout["head"],
                                               original, x_users, feedback)
        cv = fold_splits(folds_all, feedback.blocked)
        x_all = np.concatenate([x_all, x_users])
        y_all = np.concatenate([y_all, feedback.labels])
    else:
        oof_all, chosen = cross_validate(x_all, y_all, folds_all, layout["head"],
                                         test_mask=original)
    oof = oof_all[original]
    np.save(run_dir / "oof_musicnn.npy", oof.astype(np.float32))
    metrics = per_fold(labels, oof, folds)
    metrics["chosen"] = chosen
    metrics["layout"] = layout
    metrics["extracted"] = list(networks)
    metrics["augmentations"] = list(extra)
    if feedback is not None:
        metrics["feedback"] = feedback.summary()
        training = feedback.training_data(training)
    save_confusion_png(metrics["pooled"]["confusion"], run_dir / "confusion_musicnn.png",
                       "musicnn head, out-of-fold")

    estimator, grid = _heads()[layout["head"]]
    search = GridSearchCV(estimator, grid, scoring="f1_macro", cv=cv, n_jobs=1, refit=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x_all, np.array([f"Q{i + 1}" for i in y_all]))
    metrics["final_params"] = search.best_params_
    write_json(metrics, run_dir / "metrics_musicnn.json")
    save_head(search.best_estimator_, run_dir / "models", version=version, analysis=analysis,
              training=training, layout=layout, metrics=card_metrics(metrics))
    logger.info("musicnn head %s: macro-F1 %.3f ± %.3f, final %s", layout,
                metrics["macro_f1_mean"], metrics["macro_f1_std"], search.best_params_)
    return metrics


def feedback_embeddings(feedback: FeedbackClips, layout: dict[str, Any],
                        analysis: AnalysisConfig) -> np.ndarray:
    """Serving-layout embeddings (n_clips, size) of the users' clips, decoded as served."""
    networks = [OnnxMusicnn(WEIGHTS / f"{name}.json", threads=1, prefer_gpu=False)
                for name in layout["networks"]]
    embedder = MusicnnEmbedder.from_layout(networks, layout)
    rows = [embedder.embed(load_windows(clip.path, embedder.analysis(analysis)).windows,
                           analysis.sample_rate) for clip in feedback.clips]
    return np.stack(rows).astype(np.float32)


def _cross_validate_with(x: np.ndarray, labels: np.ndarray, folds: np.ndarray, head: str,
                         test_mask: np.ndarray, x_users: np.ndarray, feedback: FeedbackClips
                         ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """:func:`train.musicnn_embed.cross_validate` with the users' clips in the training
    folds they may join (the inner grid search's splits included); they are never tested."""
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV

    from train.musicnn_embed import _heads

    estimator, grid = _heads()[head]
    oof = np.zeros((len(labels), 4))
    chosen = []
    for fold in np.unique(folds):
        train, test = folds != fold, (folds == fold) & test_mask
        users = feedback.allowed({int(fold)})
        inner = fold_splits(folds[train], [b for b, ok in zip(feedback.blocked, users,
                                                              strict=True) if ok])
        search = GridSearchCV(clone(estimator), grid, scoring="f1_macro", cv=inner, n_jobs=1,
                              refit=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(np.concatenate([x[train], x_users[users]]),
                       np.concatenate([labels[train], feedback.labels[users]]))
        oof[test] = search.predict_proba(x[test])
        chosen.append({"fold": int(fold), **search.best_params_,
                       "inner_macro_f1": round(float(search.best_score_), 4)})
    return oof, chosen


def training_embeddings(root: Path, song_ids: list[str], layout: dict[str, Any],
                        analysis: AnalysisConfig, *, cache_dir: Path = CACHE_DIR,
                        networks: tuple[str, ...] = NETWORKS, augment: bool = False
                        ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The clips' embeddings in ``song_ids`` order, and their augmented copies if asked.

    Returns
    -------
    tuple
        ``(n_clips, size)`` embeddings of the original clips, and ``{augmentation: (n_clips,
        size)}`` (empty without ``augment``).

    Raises
    ------
    ValueError
        A clip has no cached embedding.
    """
    cache = extract(root, cache_dir=cache_dir, networks=networks)
    order = {sid: i for i, sid in enumerate(cache["song_ids"].tolist())}
    missing = [sid for sid in song_ids if sid not in order]
    if missing:
        raise ValueError(f"{len(missing)} clips have no cached embedding, e.g. {missing[:3]}")
    x = layout_embeddings(cache, layout, analysis.n_windows)[[order[s] for s in song_ids]]
    extra = (augmented_embeddings(root, song_ids, layout, analysis, cache_dir=cache_dir)
             if augment else {})
    return x, extra


def with_copies(x: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                copies: list[np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Originals followed by each set of copies, with labels, folds and an "original" mask.

    A copy keeps its clip's label and fold, so it trains only where the clip may.
    """
    n = len(x)
    x_all = np.concatenate([x, *copies]) if copies else x
    repeat = 1 + len(copies)
    original = np.zeros(n * repeat, dtype=bool)
    original[:n] = True
    return x_all, np.tile(labels, repeat), np.tile(folds, repeat), original


def augmented_embeddings(root: Path, song_ids: list[str], layout: dict[str, Any],
                         analysis: AnalysisConfig, *, cache_dir: Path = CACHE_DIR
                         ) -> dict[str, np.ndarray]:
    """Serving-layout embeddings of every clip under each of :data:`AUGMENTATIONS`.

    Each augmentation is computed once (ffmpeg re-encodes the clip to a temporary file, or
    the decoded windows are scaled and clipped to [-1, 1]) and cached in ``cache_dir``, keyed
    by the networks, the layout, the analysis settings, the augmentation and the clips.

    Returns
    -------
    dict
        ``{augmentation: (n_clips, embedding size)}``, rows in ``song_ids`` order.
    """
    from train.musicnn_embed import read_splits

    paths = {row["song_id"]: Path(row["path"]) for row in read_splits(root)}
    networks = [OnnxMusicnn(WEIGHTS / f"{name}.json", threads=1, prefer_gpu=False)
                for name in layout["networks"]]
    embedder = MusicnnEmbedder.from_layout(networks, layout)
    decode = embedder.analysis(analysis)
    out = {}
    for name, how in AUGMENTATIONS.items():
        payload = {"networks": [n.card.sha256 for n in networks], "how": how,
                   "patches": layout["patches_per_window"], "analysis": analysis.preprocessing(),
                   "windows": decode.n_windows, "clips": song_ids}
        key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
        path = cache_dir / f"augment-{name}-{key}.npy"
        if path.is_file():
            out[name] = np.load(path)
            continue
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for song_id in song_ids:
                source = paths[song_id]
                if isinstance(how, list):
                    source = encode(source, Path(tmp), how)
                windows = load_windows(source, decode).windows
                if not isinstance(how, list):
                    windows = np.clip(windows * 10 ** (how / 20), -1.0, 1.0)
                rows.append(embedder.embed(windows, analysis.sample_rate))
        out[name] = np.stack(rows).astype(np.float32)
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(path, out[name])
        logger.info("augmentation %s: %d clips embedded", name, len(rows))
    return out


def save_head(model: Any, directory: Path, *, version: str, analysis: AnalysisConfig,
              training: TrainingData, layout: dict[str, Any], metrics: dict[str, Any],
              name: str = "mood-4q-musicnn") -> Path:
    """Write ``{name}-{version}.skops``, its ONNX conversion (:func:`train.export.add_onnx`),
    its card, and copies of the networks it needs."""
    import skops.io as sio

    directory.mkdir(parents=True, exist_ok=True)
    for network in layout["networks"]:
        card = ModelCard.load(WEIGHTS / f"{network}.json")
        for path in (WEIGHTS / f"{network}.json", card.artifact_path(WEIGHTS / f"{network}.json")):
            shutil.copy2(path, directory / path.name)
    artifact = directory / f"{name}-{version}.skops"
    sio.dump(model, artifact, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    card = ModelCard(
        name=name, version=version, kind="musicnn", artifact=artifact.name,
        sha256=sha256_file(artifact), classes=[str(c) for c in model.classes_],
        preprocessing=analysis.preprocessing(),
        architecture={"embedding": {"networks": list(layout["networks"]),
                                    "patches_per_window": layout["patches_per_window"],
                                    **({"windows": layout["windows"]} if "windows" in layout
                                       else {}),
                                    "pooling": "mean and std over the clip's patches"},
                      "head": " -> ".join(type(step).__name__ for _, step in model.steps),
                      "params": {k: v for k, v in model.get_params().items()
                                 if k.endswith("__C") or k.endswith("__alpha")}},
        training=training, metrics=metrics,
        libraries=library_versions("scikit-learn", "skops", "numpy", "onnxruntime", "librosa"),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        notes="Head on the pretrained musicnn embedding (Pons & Serra, musicnn, 2019, ISC "
              "licence); the networks' cards name their source wheel and its sha256.",
    )
    card = add_onnx(card, directory, model)
    path = directory / f"{name}-{version}.json"
    card.save(path)
    return path
