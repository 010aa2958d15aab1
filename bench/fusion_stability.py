"""How stable is the nested fused macro-F1, and what the musicnn head still had to give.

Usage::

    nice -n 10 .venv/bin/python bench/fusion_stability.py [--skip-heads]
    nice -n 10 .venv/bin/python bench/fusion_stability.py --pre-bottleneck

Reads ``../shared/data`` (labels and artist-disjoint folds), the per-patch musicnn cache of
``python -m train musicnn`` (``.cache/musicnn``), the descriptor cache (``.cache/features``)
and out-of-fold probabilities left by earlier training runs; runs that are missing are
skipped. 25 minutes on 2 cores with other work running, nearly all of it the head variants
(``--skip-heads`` prints the first table only, in 2 minutes). Figures and conclusions:
docs/MODEL_REPORT.md, "Choosing the fusion weights".

**Weight choice.** The nested fused figure (each fold fused with the weights chosen on the
other four, :func:`train.pipeline.nested_fusion`) is computed for every combination of

- the musicnn head's out-of-fold probabilities: the shipped run's (``runs/r5``) and the same
  head cross-validated again now (:func:`train.musicnn_embed.cross_validate`; the two differ by
  at most 0.0008 per probability);
- the ensemble's: the shipped run's and the four whose stacking folds were reshuffled
  (``.cache/ensemble-augment/run2-A1n*.npz``, ``bench/ensemble_augment_grouped.py``);
- the CLDNN's: five trainings (``runs/r5``, ``runs/r5-s0-plain``, ``runs/r5-s0-augmented``,
  ``runs/r5-s1-plain``, ``runs/r3-noaug``),

with three ways of choosing the weights on the 0.05 grid: the single best point (``bags=0``,
shipped until now), the best point after averaging each point's score with its neighbours
(within 0.1 on every weight), and the mean of the best points of 50 bootstrap resamples
(``bags=50``, shipped now). A rule whose figure moves less across these near-identical
inputs is the better estimate of the same procedure.

**Head variants** (the shipped layout: MSD+MTT, 5 windows x 2 patches; logistic regression
with C chosen inside the training folds, as the shipped head): the shipped pooling; patch-
choice augmentation (4 extra training vectors per clip, pooled over another 2 of the 3 cached
patches of each window); a window-level head (one training row per window, mean of its two
patches, probabilities averaged or geometric-averaged over the clip's windows); early fusion
(the embedding with the descriptors' mean and std over the windows, descriptor block scaled by
0.5 after standardising). Each is scored alone and fused with the shipped run's CLDNN and
ensemble (``bags=0`` and ``bags=50``).

**Before the bottleneck** (``--pre-bottleneck``, only this table): the 200-value penultimate
layer is a bottleneck trained for tags; the layer it reads (max and mean over time of the
front end and the first two midend layers, 1,506 values per patch and network; the graph's
``Reshape:0``) might hold more of the mood. Both networks are run again on every cached patch
with that tensor as an extra output (the graph edited in memory; 7 minutes in two processes,
cached in ``.cache/pre-bottleneck``), pooled over the shipped layout's 10 patches, and scored
by the shipped head's procedure (:func:`train.musicnn_embed.cross_validate`), alone and fused
with the shipped run's CLDNN and ensemble (bagged weights): 21 minutes on 2 cores in all.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

MAIN = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(MAIN))

from mer_models.fusion import fuse  # noqa: E402
from train.data import load_4q  # noqa: E402
from train.metrics import per_fold  # noqa: E402
from train.musicnn_embed import CACHE_DIR, cross_validate  # noqa: E402
from train.pipeline import (  # noqa: E402
    best_weights,
    grid_predictions,
    macro_f1_rows,
    weight_grid,
)

DATA = MAIN.parent / "shared" / "data"
RUN = MAIN / "runs" / "r5"
CLDNN_RUNS = ("r5", "r5-s0-plain", "r5-s0-augmented", "r5-s1-plain", "r3-noaug")
RESHUFFLED = ("A1n", "A1n-s1", "A1n-s2", "A1n-s3")
#: Cached patch index of window w, patch p (5 windows x 3 patches); the shipped layout
#: uses patches 0 and 2 of every window.
SERVED = [w * 3 + p for w in range(5) for p in (0, 2)]
PAIRS = ((0, 1), (0, 2), (1, 2))

Chooser = Callable[[list[np.ndarray], np.ndarray], np.ndarray]
#: Training rows (x, y) of the clips in a mask; probabilities (n_clips, 4) of a fitted model.
Rows = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
Predict = Callable[[Any, np.ndarray], np.ndarray]


def smoothed_best(probabilities: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    """The grid point whose score, averaged with its neighbours' (within 0.1), is highest."""
    grid = weight_grid(len(probabilities))
    scores = macro_f1_rows(labels, grid_predictions(probabilities, grid))
    near = np.abs(grid[:, None, :] - grid[None, :, :]).max(2) <= 0.1 + 1e-9
    return grid[int(np.argmax((near * scores[None, :]).sum(1) / near.sum(1)))]


CHOOSERS: dict[str, Chooser] = {
    "single best point (bags=0)": lambda p, y: best_weights(p, y, bags=0),
    "smoothed best point": smoothed_best,
    "bagged, 50 resamples (shipped)": lambda p, y: best_weights(p, y),
}


def nested(probabilities: list[np.ndarray], labels: np.ndarray, folds: np.ndarray,
           choose: Chooser) -> dict[str, float]:
    fused = np.zeros(probabilities[0].shape)
    for k in np.unique(folds):
        w = choose([p[folds != k] for p in probabilities], labels[folds != k])
        fused[folds == k] = fuse([p[folds == k] for p in probabilities], w.tolist())
    return per_fold(labels, fused, folds)


def pooled(patches: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Mean and std over the given patches (n, k) of each clip, per network (MSD, MTT)."""
    sub = np.take_along_axis(patches, index[:, :, None], axis=1)
    mean, std = sub.mean(1), sub.std(1)
    return np.concatenate([mean[:, :200], std[:, :200], mean[:, 200:], std[:, 200:]], 1)


def logreg_oof(train_rows: Rows, predict: Predict, labels: np.ndarray,
               folds: np.ndarray, scale: Callable[[np.ndarray], np.ndarray] | None = None
               ) -> np.ndarray:
    """Out-of-fold probabilities of a logistic regression whose C is chosen by inner
    leave-one-fold-out over the training folds (the shipped head's grid)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    def fit(mask: np.ndarray, c: float) -> Any:
        x, y = train_rows(mask)
        steps = [StandardScaler(), *([FunctionTransformer(scale)] if scale else []),
                 LogisticRegression(C=c, max_iter=5000)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return make_pipeline(*steps).fit(x, y)

    oof = np.zeros((len(labels), 4))
    for k in range(5):
        training = folds != k
        scores = {}
        for c in (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3):
            inner = [f1_score(labels[folds == j], predict(fit(training & (folds != j), c),
                                                          folds == j).argmax(1),
                              average="macro") for j in range(5) if j != k]
            scores[c] = float(np.mean(inner))
        oof[folds == k] = predict(fit(training, max(scores, key=scores.__getitem__)),
                                  folds == k)
    return oof


def head_variants(patches: np.ndarray, descriptors: np.ndarray, labels: np.ndarray,
                  folds: np.ndarray) -> dict[str, np.ndarray]:
    n = len(labels)
    served = pooled(patches, np.tile(SERVED, (n, 1)))
    rng = np.random.default_rng(0)
    copies = [pooled(patches, np.array([[w * 3 + q for w in range(5)
                                         for q in PAIRS[rng.integers(3)]] for _ in range(n)]))
              for _ in range(4)]
    windows = np.stack([patches[:, [w * 3, w * 3 + 2]].mean(1) for w in range(5)], 1)
    early = np.concatenate([served, descriptors.mean(1), descriptors.std(1)], 1)
    block = np.r_[np.ones(served.shape[1]), np.full(early.shape[1] - served.shape[1], 0.5)]

    def clip_rows(x: np.ndarray, extra: tuple[np.ndarray, ...] = ()) -> Rows:
        def rows(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return (np.concatenate([x[m], *(e[m] for e in extra)]),
                    np.tile(labels[m], 1 + len(extra)))
        return rows

    def clip_predict(x: np.ndarray) -> Predict:
        def predict(model: Any, m: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict_proba(x[m]))
        return predict

    def window_rows(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return windows[m].reshape(-1, 400), np.repeat(labels[m], 5)

    def window_predict(geometric: bool) -> Predict:
        def predict(model: Any, m: np.ndarray) -> np.ndarray:
            p = model.predict_proba(windows[m].reshape(-1, 400)).reshape(-1, 5, 4)
            if not geometric:
                return np.asarray(p.mean(1))
            log = np.log(p + 1e-9).mean(1)
            e = np.exp(log - log.max(1, keepdims=True))
            return np.asarray(e / e.sum(1, keepdims=True))
        return predict

    return {
        "shipped pooling (mean+std of 10 patches)":
            logreg_oof(clip_rows(served), clip_predict(served), labels, folds),
        "+ 4 patch-choice copies per training clip":
            logreg_oof(clip_rows(served, tuple(copies)), clip_predict(served), labels, folds),
        "window-level head, mean of windows":
            logreg_oof(window_rows, window_predict(False), labels, folds),
        "window-level head, geometric mean":
            logreg_oof(window_rows, window_predict(True), labels, folds),
        "early fusion with descriptors (x0.5)":
            logreg_oof(clip_rows(early), clip_predict(early), labels, folds,
                       scale=lambda z: z * block),
    }


PRE_BOTTLENECK = "Reshape:0"
PRE_CACHE = MAIN / ".cache" / "pre-bottleneck"


def musicnn_tensors(tensors: Sequence[str], shard: int, shards: int
                    ) -> Iterator[tuple[dict[str, Any], dict[str, list[np.ndarray]]]]:
    """Every ``shards``-th clip of the splits from ``shard`` on, with the named tensors of
    both networks' graphs (edited in memory to output them) over its 15 cached patches."""
    import onnx
    import onnxruntime as ort

    from mer_models.audio import load_windows
    from mer_models.config import AnalysisConfig
    from mer_models.musicnn import musicnn_patches
    from train.musicnn_embed import CACHE_PATCHES, CACHE_WINDOWS, WEIGHTS, read_splits

    sessions = {}
    for net in ("msd", "mtt"):
        graph = onnx.load(WEIGHTS / f"musicnn-{net}-1.onnx")
        for name in tensors:
            graph.graph.output.append(onnx.helper.make_tensor_value_info(
                name, onnx.TensorProto.FLOAT, None))
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        sessions[net] = ort.InferenceSession(graph.SerializeToString(), options,
                                             providers=["CPUExecutionProvider"])
    config = AnalysisConfig().with_windows(CACHE_WINDOWS)
    for row in read_splits(DATA)[shard::shards]:
        patches = musicnn_patches(load_windows(row["path"], config).windows,
                                  sample_rate=config.sample_rate,
                                  patches_per_window=CACHE_PATCHES).patches.astype(np.float32)
        values = {}
        for net, session in sessions.items():
            name = session.get_inputs()[0].name
            parts = [session.run(list(tensors), {name: patches[i:i + 3]})
                     for i in range(0, len(patches), 3)]
            values[net] = [np.concatenate([p[j] for p in parts]) for j in range(len(tensors))]
        yield row, values


def _pre_bottleneck_shard(job: tuple[int, int]) -> Path:
    """Pre-bottleneck features (n_clips, 15, 1506) per network of every n-th clip."""
    ids: list[str] = []
    values: dict[str, list[np.ndarray]] = {"msd": [], "mtt": []}
    for row, tensors in musicnn_tensors([PRE_BOTTLENECK], *job):
        ids.append(row["song_id"])
        for net in values:
            values[net].append(tensors[net][0].astype(np.float16))
    path = PRE_CACHE / f"shard{job[0]}-of-{job[1]}.npz"
    np.savez(path, song_ids=np.array(ids), msd=np.stack(values["msd"]),
             mtt=np.stack(values["mtt"]))
    return path


def sharded_cache(folder: Path, make_shard: Callable[[tuple[int, int]], Path],
                  ids: list[str]) -> Callable[[str], np.ndarray]:
    """A per-clip cache in two shards, computed in two processes where missing.

    ``make_shard((s, 2))`` writes ``folder/shard{s}-of-2.npz`` (every other clip of the
    splits, their ``song_ids`` and one array per key). Returns the reader of one key, its rows
    in the order of ``ids``.
    """
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"shard{s}-of-2.npz" for s in range(2)]
    missing = [(s, 2) for s, path in enumerate(paths) if not path.is_file()]
    if missing:
        with ProcessPoolExecutor(len(missing)) as pool:
            list(pool.map(make_shard, missing))
    shards = [np.load(path) for path in paths]
    order = {s: i for i, s in enumerate(np.concatenate([z["song_ids"] for z in shards]))}
    rows = [order[s] for s in ids]
    return lambda key: np.concatenate([z[key] for z in shards])[rows]


def pre_bottleneck(ids: list[str], labels: np.ndarray, folds: np.ndarray,
                   penultimate: np.ndarray) -> None:
    read = sharded_cache(PRE_CACHE, _pre_bottleneck_shard, ids)
    features = {net: read(net).astype(np.float32)[:, SERVED] for net in ("msd", "mtt")}
    variants = {
        "penultimate, mean and std (shipped)": penultimate,
        "pre-bottleneck, mean": np.concatenate([features[n].mean(1) for n in features], 1),
        "pre-bottleneck, mean and std": np.concatenate(
            [np.concatenate([features[n].mean(1), features[n].std(1)], 1) for n in features], 1),
        "penultimate mean and std + pre-bottleneck mean": np.concatenate(
            [penultimate, *(features[n].mean(1) for n in features)], 1),
    }
    others = [np.load(RUN / "oof_cldnn.npy"), np.load(RUN / "oof_ensemble.npy")]
    print("| features (MSD+MTT, 5 windows x 2 patches) | values | head macro-F1 | "
          "head valence / arousal | fused (bagged) | fused valence / arousal |")
    print("|---|---|---|---|---|---|")
    for name, x in variants.items():
        oof, _ = cross_validate(x.astype(np.float32), labels, folds, "logreg")
        head = per_fold(labels, oof, folds)
        fused = nested([*others, oof], labels, folds, CHOOSERS["bagged, 50 resamples (shipped)"])
        print(f"| {name} | {x.shape[1]} | {head['macro_f1_mean']:.3f} ± "
              f"{head['macro_f1_std']:.3f} | {head['valence_accuracy_mean']:.3f} / "
              f"{head['arousal_accuracy_mean']:.3f} | {fused['macro_f1_mean']:.3f} | "
              f"{fused['valence_accuracy_mean']:.3f} / {fused['arousal_accuracy_mean']:.3f} |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-heads", action="store_true", help="only the weight choice")
    parser.add_argument("--pre-bottleneck", action="store_true",
                        help="only the features before musicnn's bottleneck")
    args = parser.parse_args()
    threadpool_limits(2)
    clips = load_4q(DATA)
    ids = [c.song_id for c in clips]
    labels = np.array([int(c.quadrant[1]) - 1 for c in clips])
    folds = np.array([c.fold for c in clips])
    cache = np.load(max(CACHE_DIR.glob("4q-*.npz"), key=lambda p: p.stat().st_mtime))
    order = {s: i for i, s in enumerate(cache["song_ids"].tolist())}
    patches = np.concatenate([cache["msd"], cache["mtt"]], axis=2)[[order[s] for s in ids]]
    if args.pre_bottleneck:
        pre_bottleneck(ids, labels, folds, pooled(patches, np.tile(SERVED, (len(ids), 1))))
        return

    shipped_x = pooled(patches, np.tile(SERVED, (len(ids), 1)))
    heads = {"r5": np.load(RUN / "oof_musicnn.npy"),
             "again": cross_validate(shipped_x.astype(np.float32), labels, folds, "logreg")[0]}
    print(f"head probabilities, r5 against again: max |diff| "
          f"{np.abs(heads['r5'] - heads['again']).max():.4f}")
    ensembles = {"r5": np.load(RUN / "oof_ensemble.npy")}
    for name in RESHUFFLED:
        path = MAIN / ".cache" / "ensemble-augment" / f"run2-{name}.npz"
        if path.is_file():
            ensembles[name] = np.load(path)["original"]
    cldnns = {name: np.load(MAIN / "runs" / name / "oof_cldnn.npy") for name in CLDNN_RUNS
              if (MAIN / "runs" / name / "oof_cldnn.npy").is_file()}
    combos = list(itertools.product(heads.items(), ensembles.items(), cldnns.items()))
    print(f"\n{len(combos)} combinations ({len(heads)} heads x {len(ensembles)} ensembles x "
          f"{len(cldnns)} CLDNNs), nested three-model fusion:\n")
    print("| weight choice | mean macro-F1 | sd over combinations | min | max | "
          "on the shipped run's files |")
    print("|---|---|---|---|---|---|")
    for name, choose in CHOOSERS.items():
        scores = [nested([c, e, h], labels, folds, choose)["macro_f1_mean"]
                  for (_, h), (_, e), (_, c) in combos]
        shipped = nested([cldnns["r5"], ensembles["r5"], heads["r5"]], labels, folds, choose)
        print(f"| {name} | {np.mean(scores):.4f} | {np.std(scores):.4f} | {min(scores):.3f} | "
              f"{max(scores):.3f} | {shipped['macro_f1_mean']:.3f} |")
    if args.skip_heads:
        return

    features = np.load(max((MAIN / ".cache" / "features").glob("4q-*.npz"),
                           key=lambda p: p.stat().st_mtime))
    rows = {s: i for i, s in enumerate(features["song_ids"].tolist())}
    descriptors = features["descriptors"][[rows[s] for s in ids]]
    others = [np.load(RUN / "oof_cldnn.npy"), np.load(RUN / "oof_ensemble.npy")]
    print("\n| head on the shipped layout | head macro-F1 | fused, bags=0 | fused, bags=50 | "
          "fused valence / arousal (bags=50) |")
    print("|---|---|---|---|---|")
    for name, oof in head_variants(patches, descriptors, labels, folds).items():
        head = per_fold(labels, oof, folds)
        single = nested([*others, oof], labels, folds, CHOOSERS["single best point (bags=0)"])
        bagged = nested([*others, oof], labels, folds, CHOOSERS["bagged, 50 resamples (shipped)"])
        print(f"| {name} | {head['macro_f1_mean']:.3f} ± {head['macro_f1_std']:.3f} | "
              f"{single['macro_f1_mean']:.3f} | {bagged['macro_f1_mean']:.3f} | "
              f"{bagged['valence_accuracy_mean']:.3f} / {bagged['arousal_accuracy_mean']:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
