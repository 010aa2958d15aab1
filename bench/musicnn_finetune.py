"""Does fine-tuning musicnn's last layers on the mood labels beat the frozen embedding?

Usage::

    nice -n 10 .venv/bin/python bench/musicnn_finetune.py --layers backend
    nice -n 10 .venv/bin/python bench/musicnn_finetune.py --layers midend

Reads ``../shared/data`` (labels, artist-disjoint folds, audio). The shipped head is a
logistic regression on the frozen 200-value penultimate layer of both networks (MSD and MTT;
mean and std over 5 windows x 2 patches). Fine-tuning the whole network needs a GPU; on the
CPU the layers after musicnn's first midend layer can be trained, because everything before
them can be cached once:

- ``backend``: the dense layer into the penultimate layer (1,506 x 200 weights per network),
  from the cached pre-bottleneck values;
- ``midend``: also the last two 64-filter midend convolutions (7 taps each), from the cached
  output of the first one (64 x 187 per patch, float16) and the pooled front end.

The model is musicnn's own graph from there on (its batch normalisations frozen, as at
inference), both networks, the shipped pooling and standardisation, and a 4-way linear layer
started from the shipped head's logistic regression (C chosen by the shipped grid inside the
training folds, the L2 penalty kept), so epoch 0 is the frozen head. Training: Adam (lr
``--lr``), cross-entropy plus ``--lam`` times the squared distance of the musicnn weights from
the pretrained ones (L2-SP), batches of 32 clips, each on 10 of its 15 cached patches drawn at
random. Per outer fold the number of epochs (0 to ``--epochs``) is chosen on one inner
validation fold (the next fold), then the model is trained again on all four training folds
for that many epochs and scored on the held-out fold: nothing is chosen on the fold scored.

The cache (``.cache/midend``, 6.5 minutes in two processes, 1.1 GB) holds, per clip, network
and cached patch, the first midend layer's output, the front end's max and mean over time and
the pre-bottleneck values (checked against the recomputed ones). Figures and conclusions:
docs/MODEL_REPORT.md, "Fine-tuning musicnn's last layers on the CPU".
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

MAIN = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(MAIN))
sys.path.insert(0, str(MAIN / "bench"))

import fusion_stability as stability  # noqa: E402

CACHE = MAIN / ".cache" / "midend"
SERVED = stability.SERVED
BAGGED = stability.CHOOSERS["bagged, 50 resamples (shipped)"]
NETWORKS = ("msd", "mtt")
#: Graph tensors cached: first midend layer's output, the front end, the pre-bottleneck layer.
TENSORS = ("batchnorm_6/add_1:0", "concat:0", "Reshape:0")
TRAINED = {"backend": ("W", "b"), "midend": ("c2w", "c2b", "c3w", "c3b", "W", "b")}


def _cache_shard(job: tuple[int, int]) -> Path:
    ids: list[str] = []
    out: dict[str, list[np.ndarray]] = {f"{n}_{k}": [] for n in NETWORKS
                                        for k in ("a", "xp", "pre")}
    for row, tensors in stability.musicnn_tensors(TENSORS, *job):
        ids.append(row["song_id"])
        for net, (first, front, pre) in tensors.items():
            out[f"{net}_a"].append(first.astype(np.float16))
            out[f"{net}_xp"].append(np.stack([front.max(2), front.mean(2)], 1))
            out[f"{net}_pre"].append(pre)
    path = CACHE / f"shard{job[0]}-of-{job[1]}.npz"
    arrays: dict[str, Any] = {k: np.stack(v) for k, v in out.items()}
    np.savez(path, song_ids=np.array(ids), **arrays)
    return path


def load_cache(ids: list[str]) -> dict[str, np.ndarray]:
    """``a`` (n, 2, 15, 64, 187) float16, ``xp`` (n, 2, 15, 2, 561), ``pre`` (n, 2, 15, 1506)."""
    read = stability.sharded_cache(CACHE, _cache_shard, ids)
    return {k: np.stack([read(f"{n}_{k}") for n in NETWORKS], 1) for k in ("a", "xp", "pre")}


def pretrained(net: str) -> dict[str, Any]:
    """musicnn's weights after its first midend layer, as torch tensors."""
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(MAIN / "mer_models" / "weights" / f"musicnn-{net}-1.onnx")
    t = {i.name: torch.tensor(numpy_helper.to_array(i)).float() for i in graph.graph.initializer}
    return {"c2w": t["conv1d_1/ExpandDims_1:0"].reshape(64, 64, 7),
            "c2b": t["tensor__21"].reshape(64), "bn7m": t["batchnorm_7/mul:0"].reshape(64, 1),
            "bn7a": t["tensor__22"].reshape(64, 1),
            "c3w": t["conv1d_2/ExpandDims_1:0"].reshape(64, 64, 7),
            "c3b": t["tensor__23"].reshape(64), "bn8m": t["batchnorm_8/mul:0"].reshape(64, 1),
            "bn8a": t["tensor__24"].reshape(64, 1),
            "bn9m": t["batchnorm_9/mul:0"], "bn9a": t["batchnorm_9/sub:0"],
            "W": t["MatMul/ReadVariableOp:0"], "b": t["add_10/ReadVariableOp:0"],
            "bn10m": t["batchnorm_10/mul:0"], "bn10a": t["batchnorm_10/sub:0"]}


def build(layers: str, cache: dict[str, np.ndarray], labels: np.ndarray,
          folds: np.ndarray) -> Any:
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    nets = [pretrained(n) for n in NETWORKS]
    trained = TRAINED[layers]
    conv = torch.nn.functional.conv1d

    def batch(idx: np.ndarray, patches: list[int]) -> dict[str, Any]:
        if layers == "backend":
            return {"pre": torch.tensor(cache["pre"][idx][:, :, patches])}
        return {"a": torch.tensor(cache["a"][idx][:, :, patches].astype(np.float32)),
                "xp": torch.tensor(cache["xp"][idx][:, :, patches])}

    class FineTuned(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.own: Any = torch.nn.ModuleList(torch.nn.ParameterDict(
                {k: torch.nn.Parameter(w[k].clone()) for k in trained}) for w in nets)
            self.linear = torch.nn.Linear(800, 4)

        def start_from(self, scaler: Any, head: Any, c: float, n: int) -> None:
            """The frozen head: standardisation and logistic regression fitted on n clips."""
            self.mu = torch.tensor(scaler.mean_).float()
            self.sd = torch.tensor(scaler.scale_).float()
            self.linear.weight.data = torch.tensor(head.coef_).float()
            self.linear.bias.data = torch.tensor(head.intercept_).float()
            self.l2 = 1.0 / (2 * c * n)  # the logistic regression's own penalty

        def weight(self, k: int, name: str) -> Any:
            return self.own[k][name] if name in trained else nets[k][name]

        def pre_bottleneck(self, x: dict[str, Any], k: int) -> Any:
            if "pre" in x:
                return x["pre"][:, k]
            first, front = x["a"][:, k], x["xp"][:, k]
            n, p = first.shape[:2]
            first = first.reshape(n * p, 64, -1)
            w = nets[k]
            second = (torch.relu(conv(first, self.weight(k, "c2w"), self.weight(k, "c2b"),
                                      padding=3)) * w["bn7m"] + w["bn7a"] + first)
            third = (torch.relu(conv(second, self.weight(k, "c3w"), self.weight(k, "c3b"),
                                     padding=3)) * w["bn8m"] + w["bn8a"] + second)
            mid = torch.cat([first, second, third], 1)
            pooled = torch.stack([mid.amax(2), mid.mean(2)], 1).reshape(n, p, 2, 192)
            # The graph's layout: max and mean of each channel side by side.
            return torch.cat([front, pooled], 3).transpose(2, 3).reshape(n, p, 1506)

        def embedding(self, x: dict[str, Any]) -> Any:
            out = []
            for k, w in enumerate(nets):
                h = self.pre_bottleneck(x, k) * w["bn9m"] + w["bn9a"]
                pen = (torch.relu(h @ self.weight(k, "W") + self.weight(k, "b")) * w["bn10m"]
                       + w["bn10a"])
                out += [pen.mean(1), pen.std(1, unbiased=False)]
            return torch.cat(out, 1)

        def forward(self, x: dict[str, Any]) -> Any:
            return self.linear((self.embedding(x) - self.mu) / self.sd)

        def penalty(self, lam: float) -> Any:
            moved = sum(((self.own[k][n] - w[n]) ** 2).sum() for k, w in enumerate(nets)
                        for n in trained)
            return lam * moved + self.l2 * (self.linear.weight ** 2).sum()

    def predict(model: FineTuned, idx: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([torch.softmax(model(batch(idx[i:i + 64], SERVED)), 1).numpy()
                                   for i in range(0, len(idx), 64)])

    frozen = FineTuned()
    with torch.no_grad():
        embedded = np.concatenate([frozen.embedding(batch(np.arange(i, min(i + 64, len(labels))),
                                                          SERVED)).numpy()
                                   for i in range(0, len(labels), 64)])
        if layers == "midend":
            recomputed = frozen.pre_bottleneck(batch(np.arange(8), SERVED), 0)
            gap = float((recomputed - torch.tensor(cache["pre"][:8, 0][:, SERVED])).abs().max())
            print(f"pre-bottleneck recomputed from the float16 cache: max |diff| {gap:.3f} "
                  f"(values up to {np.abs(cache['pre'][:8, 0]).max():.0f})")

    def fit(train: np.ndarray, epochs: int, lr: float, lam: float,
            scored: np.ndarray) -> list[np.ndarray]:
        """Probabilities of ``scored`` clips after each epoch (0 = the frozen head)."""
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        idx = np.flatnonzero(train)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            search = GridSearchCV(
                make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
                {"logisticregression__C": [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3]},
                scoring="f1_macro", cv=PredefinedSplit(folds[idx])).fit(embedded[idx],
                                                                         labels[idx])
        c = search.best_params_["logisticregression__C"]
        model = FineTuned()
        model.start_from(search.best_estimator_[0], search.best_estimator_[1], c, len(idx))
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        history = [predict(model, np.flatnonzero(scored))]
        for _ in range(epochs):
            order = rng.permutation(idx)
            for i in range(0, len(order), 32):
                b = order[i:i + 32]
                patches = sorted(rng.choice(15, 10, replace=False).tolist())
                loss = (torch.nn.functional.cross_entropy(model(batch(b, patches)),
                                                          torch.tensor(labels[b]))
                        + model.penalty(lam))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            history.append(predict(model, np.flatnonzero(scored)))
        return history

    return fit


def main() -> None:
    import torch
    from sklearn.metrics import f1_score

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", choices=sorted(TRAINED), default="midend")
    parser.add_argument("--epochs", type=int, default=15, help="most epochs tried")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--lam", type=float, default=1e-3, help="L2-SP strength")
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.monotonic()
    clips = stability.load_4q(stability.DATA)
    labels = np.array([int(c.quadrant[1]) - 1 for c in clips])
    folds = np.array([c.fold for c in clips])
    fit = build(args.layers, load_cache([c.song_id for c in clips]), labels, folds)
    tuned, frozen = np.zeros((len(labels), 4)), np.zeros((len(labels), 4))
    print("| fold | inner validation fold: macro-F1 after 0, 5, 10, 15 epochs | epochs chosen "
          "| held-out fold: frozen | fine-tuned |\n|---|---|---|---|---|")
    for k in np.unique(folds):
        j = (k + 1) % 5
        inner = fit((folds != k) & (folds != j), args.epochs, args.lr, args.lam, folds == j)
        curve = [f1_score(labels[folds == j], p.argmax(1), average="macro") for p in inner]
        best = int(np.argmax(curve))
        outer = fit(folds != k, best, args.lr, args.lam, folds == k)
        frozen[folds == k], tuned[folds == k] = outer[0], outer[-1]
        scores = [f1_score(labels[folds == k], p.argmax(1), average="macro")
                  for p in (outer[0], outer[-1])]
        print(f"| {k} | {' / '.join(f'{c:.3f}' for c in curve[::5])} | {best} | "
              f"{scores[0]:.3f} | {scores[1]:.3f} |", flush=True)
    others = [np.load(stability.RUN / f"oof_{kind}.npy") for kind in ("cldnn", "ensemble")]
    print(f"\n{args.layers}, lr {args.lr:g}, L2-SP {args.lam:g}, up to {args.epochs} epochs "
          f"({time.monotonic() - started:.0f} s):\n")
    print("| head | macro-F1 | valence / arousal | fused with the shipped CLDNN and ensemble "
          "(bagged) | fused valence / arousal |\n|---|---|---|---|---|")
    for name, oof in (("frozen (epoch 0)", frozen), ("fine-tuned", tuned)):
        head = stability.per_fold(labels, oof, folds)
        fused = stability.nested([*others, oof], labels, folds, BAGGED)
        print(f"| {name} | {head['macro_f1_mean']:.3f} ± {head['macro_f1_std']:.3f} | "
              f"{head['valence_accuracy_mean']:.3f} / {head['arousal_accuracy_mean']:.3f} | "
              f"{fused['macro_f1_mean']:.3f} | {fused['valence_accuracy_mean']:.3f} / "
              f"{fused['arousal_accuracy_mean']:.3f} |")


if __name__ == "__main__":
    main()
