"""musicnn embeddings of the 4Q clips and a mood head on them, over the artist-disjoint folds.

``python -m train.musicnn_embed [--stage all|extract|evaluate|timing]``:

- ``extract``: decodes every clip of ``splits.csv`` with the engine's windows
  (:func:`mer_models.audio.load_windows`, 5 windows per clip, of which windows 0, 2 and 4 are
  the 3 serving windows), cuts 3 patches per window with :func:`mer_models.musicnn.musicnn_patches`
  (patch 1 is the single centred patch, patches 0 and 2 the two-patch layout) and caches the
  penultimate layer of every patch, MSD and MTT, in ``.cache/musicnn/``.
- ``evaluate``: pools the patches of each setting (3 or 5 windows, 1, 2 or 3 patches per window)
  into clip embeddings (mean and std, 400 values per network) and cross-validates a logistic
  regression and a small MLP on MSD, MTT and MSD+MTT over the 5 folds of ``splits.csv``;
  hyper-parameters are grid-searched inside the training folds only (leave-one-fold-out over
  the 4 training folds). Out-of-fold probabilities (rows in ``splits.csv`` order) and metrics
  go to ``runs/musicnn/``.
- ``timing``: milliseconds per 30 s clip (decode, front end, each network), 1 onnxruntime
  thread and the default.
- ``fuse``: nested late fusion of a head's out-of-fold probabilities with another model's
  (``--with runs/ens/oof_ensemble.npy``, from ``python -m train ensemble --run runs/ens``):
  each fold is fused with the weight chosen on the other four (:func:`mer_models.fusion.fuse`).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mer_models.audio import load_windows
from mer_models.config import AnalysisConfig
from mer_models.fusion import fuse
from mer_models.musicnn import FRONT_END, OnnxMusicnn, musicnn_patches, pool_embedding
from train.data import DEFAULT_DATA_ROOT, QUADRANT_NAMES, serving_windows
from train.metrics import per_fold, write_json

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "mer_models" / "weights"
CACHE_DIR = ROOT / ".cache" / "musicnn"
RUN_DIR = ROOT / "runs" / "musicnn"
NETWORKS = ("msd", "mtt")
#: Extracted once; every evaluated setting is a subset of these patches.
CACHE_WINDOWS, CACHE_PATCHES = 5, 3
#: Patch indices (within a window of the cache) of 1, 2 and 3 patches per window.
PATCH_SUBSETS = {1: [1], 2: [0, 2], 3: [0, 1, 2]}
FEATURE_SETS = {"msd": ("msd",), "mtt": ("mtt",), "msd+mtt": ("msd", "mtt")}
DEFAULT_SETTING = (3, 1)  # serving windows, patches per window


def read_splits(root: Path) -> list[dict[str, str]]:
    """Rows of ``4q/splits.csv`` in file order, each with its audio path."""
    splits = root / "4q" / "splits.csv"
    with splits.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["path"] = str(root / "4q" / "audio" / row["quadrant"] / f"{row['song_id']}.mp3")
    return rows


def _models(threads: int, networks: tuple[str, ...] = NETWORKS) -> dict[str, OnnxMusicnn]:
    return {key: OnnxMusicnn(WEIGHTS / f"musicnn-{key}-1.json", threads=threads,
                             prefer_gpu=False) for key in networks}


def extract(root: Path, *, threads: int = 1, cache_dir: Path = CACHE_DIR,
            networks: tuple[str, ...] = NETWORKS) -> dict[str, NDArray[Any]]:
    """Penultimate layer of every cached patch of every clip, from the cache when it holds it.

    Parameters
    ----------
    root : path
        The data folder (``4q/splits.csv`` and the audio).
    threads : int
        onnxruntime threads (0: all cores).
    cache_dir : path
        Where the embeddings are cached, keyed by the models and the front end (a cache of
        other clips is recomputed and replaced).
    networks : tuple of str
        The networks to run (``"msd"``, ``"mtt"``).

    Returns
    -------
    dict
        ``song_ids`` (n_clips,), ``msd`` and ``mtt`` (n_clips, 15, 200) float32 with the
        patches window by window (3 per window), ``window_index`` and ``start_frames`` (15,).
    """
    rows = read_splits(root)
    models = _models(threads, networks)
    config = AnalysisConfig().with_windows(CACHE_WINDOWS)
    payload = {"front_end": FRONT_END, "models": {k: m.card.sha256 for k, m in models.items()},
               "preprocessing": config.preprocessing(), "windows": CACHE_WINDOWS,
               "patches": CACHE_PATCHES, "max_duration": config.max_duration}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / f"4q-{key}.npz"
    ids = np.array([r["song_id"] for r in rows])
    if path.is_file():
        with np.load(path) as cached:
            if np.array_equal(cached["song_ids"], ids):
                logger.info("embeddings from cache %s", path)
                return dict(cached)
    values: dict[str, list[NDArray[np.float32]]] = {k: [] for k in models}
    start = time.perf_counter()
    for i, row in enumerate(rows):
        audio = load_windows(row["path"], config)
        patches = musicnn_patches(audio.windows, sample_rate=config.sample_rate,
                                  patches_per_window=CACHE_PATCHES)
        for name, model in models.items():
            values[name].append(model.penultimate(patches.patches))
        if (i + 1) % 50 == 0:
            logger.info("%d/%d clips (%.0f s)", i + 1, len(rows), time.perf_counter() - start)
    result = {"song_ids": ids, "window_index": patches.window_index,
              "start_frames": patches.start_frames,
              **{k: np.stack(v).astype(np.float32) for k, v in values.items()}}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, allow_pickle=False, **result)
    tmp.replace(path)
    return result


def clip_embeddings(penultimate: NDArray[np.float32], n_windows: int, patches_per_window: int
                    ) -> NDArray[np.float32]:
    """Mean+std embeddings (n_clips, 400) of one setting, from the cached patches."""
    windows = serving_windows(CACHE_WINDOWS, n_windows)
    index = [w * CACHE_PATCHES + p for w in windows for p in PATCH_SUBSETS[patches_per_window]]
    return np.stack([pool_embedding(clip[index]) for clip in penultimate])


def _heads() -> dict[str, tuple[Any, dict[str, list[Any]]]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logreg": (make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
                   {"logisticregression__C": [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3]}),
        # Full-batch L-BFGS: on 576 clips it is faster and steadier than Adam.
        "mlp": (make_pipeline(StandardScaler(), MLPClassifier(
                    hidden_layer_sizes=(64,), solver="lbfgs", max_iter=500, random_state=0)),
                {"mlpclassifier__alpha": [1.0, 10.0, 100.0]}),
    }


def cross_validate(x: NDArray[np.float32], labels: NDArray[np.int64], folds: NDArray[np.int64],
                   head: str, *, test_mask: NDArray[np.bool_] | None = None
                   ) -> tuple[NDArray[np.float64], list[dict[str, Any]]]:
    """Out-of-fold probabilities (n, 4) and the chosen hyper-parameters of each outer fold.

    The grid search sees only the training folds and splits them by fold again, so inner
    validation is artist-disjoint too. ``test_mask`` limits the rows predicted for a held-out
    fold (the originals, when the rest are augmented copies); rows outside it stay 0.
    """
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, PredefinedSplit

    estimator, grid = _heads()[head]
    oof = np.zeros((len(labels), len(QUADRANT_NAMES)))
    chosen = []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        if test_mask is not None:
            test = test & test_mask
        search = GridSearchCV(clone(estimator), grid, scoring="f1_macro",
                              cv=PredefinedSplit(folds[train]), n_jobs=1, refit=True)
        with warnings.catch_warnings():
            # L-BFGS stopping at max_iter under a weak penalty is expected, not an error.
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(x[train], labels[train])
        oof[test] = search.predict_proba(x[test])
        chosen.append({"fold": int(fold), **search.best_params_,
                       "inner_macro_f1": round(float(search.best_score_), 4)})
    return oof, chosen


def evaluate(root: Path, cache: dict[str, NDArray[Any]], *, run: Path = RUN_DIR,
             settings: list[tuple[int, int]] | None = None,
             mlp_settings: tuple[tuple[int, int], ...] = (DEFAULT_SETTING, (5, 3)),
             ) -> dict[str, Any]:
    """Cross-validate the heads on every feature set and setting; write ``run``.

    The logistic regression runs on every setting (3 or 5 windows, 1 to 3 patches per window
    unless ``settings`` says otherwise), the slower MLP on ``mlp_settings`` only.
    """
    rows = read_splits(root)
    if list(cache["song_ids"]) != [r["song_id"] for r in rows]:
        raise ValueError("cached embeddings are not in splits.csv order")
    labels = np.array([QUADRANT_NAMES.index(r["quadrant"]) for r in rows])
    folds = np.array([int(r["fold"]) for r in rows])
    run.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for n_windows, n_patches in settings or [(w, p) for w in (3, 5) for p in (1, 2, 3)]:
        embedded = {k: clip_embeddings(cache[k], n_windows, n_patches) for k in NETWORKS}
        for feature_set, parts in FEATURE_SETS.items():
            x = np.concatenate([embedded[k] for k in parts], axis=1)
            for head in ("logreg", "mlp"):
                if head == "mlp" and (n_windows, n_patches) not in mlp_settings:
                    continue
                name = f"{feature_set}-{head}-w{n_windows}p{n_patches}"
                start = time.perf_counter()
                oof, chosen = cross_validate(x, labels, folds, head)
                metrics = per_fold(labels, oof, folds)
                metrics["chosen"] = chosen
                metrics["seconds"] = round(time.perf_counter() - start, 1)
                results[name] = metrics
                _save_oof(run / f"oof-{name}", rows, oof)
                logger.info("%-28s macro-F1 %.3f ± %.3f  valence %.3f  arousal %.3f", name,
                            metrics["macro_f1_mean"], metrics["macro_f1_std"],
                            metrics["valence_accuracy_mean"], metrics["arousal_accuracy_mean"])
    write_json(results, run / "metrics.json")
    _write_summary(results, run / "summary.md")
    return results


def _write_summary(results: dict[str, Any], path: Path) -> None:
    lines = ["| features-head-setting | macro-F1 (mean ± std) | per fold 0-4 | valence acc | "
             "arousal acc | chosen per fold |", "|---|---|---|---|---|---|"]
    for name, m in sorted(results.items(), key=lambda kv: -kv[1]["macro_f1_mean"]):
        folds = " ".join(f"{f['macro_f1']:.3f}" for f in m["folds"].values())
        chosen = ", ".join(str(next(v for k, v in c.items() if "__" in k)) for c in m["chosen"])
        lines.append(f"| {name} | {m['macro_f1_mean']:.3f} ± {m['macro_f1_std']:.3f} | {folds} "
                     f"| {m['valence_accuracy_mean']:.3f} | {m['arousal_accuracy_mean']:.3f} "
                     f"| {chosen} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _save_oof(stem: Path, rows: list[dict[str, str]], oof: NDArray[np.float64]) -> None:
    np.save(stem.with_suffix(".npy"), oof.astype(np.float32))
    with stem.with_suffix(".csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["song_id", "fold", "quadrant", *QUADRANT_NAMES])
        for row, p in zip(rows, oof, strict=True):
            writer.writerow([row["song_id"], row["fold"], row["quadrant"],
                             *(f"{v:.6f}" for v in p)])


def timing(root: Path, *, n_clips: int = 20) -> dict[str, Any]:
    """Milliseconds per 30 s clip with the serving setting (3 windows, 1 patch per window)."""
    rows = read_splits(root)[:n_clips]
    config = AnalysisConfig()
    report: dict[str, Any] = {}
    for threads in (1, 0):
        models = _models(threads)
        # Warm-up: librosa's first call and onnxruntime's first run are not per-clip costs.
        warm = musicnn_patches(load_windows(rows[0]["path"], config).windows)
        for model in models.values():
            model.embed(warm.patches)
        spent = dict.fromkeys(("decode", "front_end", *NETWORKS), 0.0)
        for row in rows:
            t0 = time.perf_counter()
            audio = load_windows(row["path"], config)
            t1 = time.perf_counter()
            patches = musicnn_patches(audio.windows, sample_rate=config.sample_rate)
            spent["decode"] += t1 - t0
            spent["front_end"] += time.perf_counter() - t1
            for name, model in models.items():
                t = time.perf_counter()
                model.embed(patches.patches)
                spent[name] += time.perf_counter() - t
        per_clip = {k: round(1e3 * v / len(rows), 1) for k, v in spent.items()}
        per_clip["total"] = round(sum(per_clip.values()), 1)
        report[f"threads={threads or 'default'}"] = per_clip
        logger.info("onnxruntime threads %s: ms per clip %s", threads or "default", per_clip)
    return report


def nested_fusion(root: Path, other: Path, *, run: Path = RUN_DIR,
                  settings: tuple[str, ...] = ("msd-logreg-w3p1", "msd+mtt-logreg-w3p1",
                                               "msd+mtt-logreg-w3p2")) -> dict[str, Any]:
    """Fuse each head's out-of-fold probabilities with another model's, weights nested.

    ``other`` holds (720, 4) out-of-fold probabilities in ``splits.csv`` order.
    """
    from sklearn.metrics import f1_score

    rows = read_splits(root)
    folds = np.array([int(r["fold"]) for r in rows])
    labels = np.array([QUADRANT_NAMES.index(r["quadrant"]) for r in rows])
    p_other = np.load(other)
    grid = np.round(np.linspace(0, 1, 21), 2)

    def best(p_head: NDArray[np.float64], p_rest: NDArray[np.float64],
             y: NDArray[np.int64]) -> float:
        scores = [f1_score(y, fuse([p_head, p_rest], [w, 1 - w]).argmax(1), average="macro")
                  for w in grid]
        return float(grid[int(np.argmax(scores))])

    results: dict[str, Any] = {}
    for name in settings:
        p_head = np.load(run / f"oof-{name}.npy")
        fused = np.zeros_like(p_head)
        weights = {}
        for k in np.unique(folds):
            train = folds != k
            weights[int(k)] = best(p_head[train], p_other[train], labels[train])
            fused[folds == k] = fuse([p_head[folds == k], p_other[folds == k]],
                                     [weights[int(k)], 1 - weights[int(k)]])
        results[name] = {"head_weight_per_fold": weights, **per_fold(labels, fused, folds)}
        logger.info("%s + %s: macro-F1 %.3f, head weights %s", name, other.name,
                    results[name]["macro_f1_mean"], list(weights.values()))
    write_json(results, run / f"fusion-with-{other.stem}.json")
    return results


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m train.musicnn_embed [--stage ...] [--data DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--stage", choices=("all", "extract", "evaluate", "timing", "fuse"),
                        default="all")
    parser.add_argument("--with", dest="other", type=Path,
                        default=ROOT / "runs" / "ens" / "oof_ensemble.npy",
                        help="out-of-fold probabilities to fuse with (stage fuse)")
    parser.add_argument("--threads", type=int, default=1,
                        help="onnxruntime threads while extracting (0: all cores)")
    parser.add_argument("--run", type=Path, default=RUN_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import sklearn.neural_network  # noqa: F401  (loads scipy's BLAS before the limit below)
    from threadpoolctl import threadpool_limits

    # One BLAS thread: the machine's two cores are shared, and these small matrices gain
    # nothing from more (oversubscribed, a logistic regression ran 20 times slower).
    threadpool_limits(1)
    if args.stage in ("all", "timing"):
        args.run.mkdir(parents=True, exist_ok=True)
        write_json(timing(args.data), args.run / "timing.json")
    if args.stage in ("all", "extract", "evaluate"):
        cache = extract(args.data, threads=args.threads)
        if args.stage != "extract":
            evaluate(args.data, cache, run=args.run)
    if args.stage == "fuse":
        nested_fusion(args.data, args.other, run=args.run)


if __name__ == "__main__":
    main()
