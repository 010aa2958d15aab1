"""Heads on the cached musicnn (MSD, W3 P1) embedding and late-fusion rules, all nested over
the 5 artist-disjoint folds of 4Q.

Run: ``nice -n 10 .venv/bin/python bench/heads.py`` after ``python -m train musicnn``
(which caches the per-patch embeddings in ``.cache/musicnn/``) and ``python -m train fuse``
(out-of-fold probabilities in ``runs/r3-noaug``). Reads ``../shared/data`` read-only; writes
``.cache/heads-sweep/`` (tables in ``results.md`` and ``results.json`` there). Figures and
conclusions: docs/MODEL_REPORT.md, "Heads and fusion rules compared".

Nesting:
- heads: for outer fold k, hyper-parameters are grid-searched with leave-one-fold-out over
  the 4 training folds (artist-disjoint, as train/musicnn_embed.cross_validate), refitted on
  the 4 folds, then predict fold k;
- fusion: the parameters used on fold k (weights, temperatures, stacker) are fitted on the
  out-of-fold probabilities of the other four folds only (as train/pipeline.nested_fusion).
- "auto" rows choose the head / the (head, rule) pair per outer fold from inner scores only.

Head OOFs are cached in .cache/heads-sweep/cache/ (delete it to recompute everything).
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn.neural_network  # noqa: F401  (load BLAS before limiting it)
from threadpoolctl import threadpool_limits

threadpool_limits(1)
# SVC(probability=True) is deprecated in sklearn 1.9 (still works; same Platt scaling).
warnings.filterwarnings("ignore", category=FutureWarning)

from scipy.optimize import minimize_scalar  # noqa: E402
from scipy.special import softmax  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin, clone  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, PredefinedSplit  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import Normalizer, StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

MAIN = Path(__file__).resolve().parents[1]
DATA = MAIN.parent / "shared" / "data"
NPZ = max((MAIN / ".cache" / "musicnn").glob("4q-*.npz"), key=lambda p: p.stat().st_mtime,
          default=MAIN / ".cache" / "musicnn" / "4q-missing.npz")
RUN = MAIN / "runs" / "r3-noaug"
OUT = MAIN / ".cache" / "heads-sweep"
CACHE = OUT / "cache"
Q = ("Q1", "Q2", "Q3", "Q4")
#: W3 P1: serving windows 0, 2, 4 of the 5 cached, centred patch (1 of 0..2) of each.
W3P1 = [w * 3 + 1 for w in (0, 2, 4)]
T0 = time.process_time()


# --- data ---------------------------------------------------------------------------------

def load():
    with (DATA / "4q" / "splits.csv").open(newline="", encoding="utf-8") as h:
        rows = list(csv.DictReader(h))
    ids = np.array([r["song_id"] for r in rows])
    # train.data.load_4q sorts clips by song_id: the run's OOF files are in sorted order.
    assert list(ids) == sorted(ids), "splits.csv is not sorted by song_id"
    labels = np.array([Q.index(r["quadrant"]) for r in rows])
    folds = np.array([int(r["fold"]) for r in rows])
    global ARTISTS
    ARTISTS = np.array([r["artist"] for r in rows])
    with np.load(NPZ) as d:
        assert np.array_equal(d["song_ids"], ids), "npz not in splits.csv order"
        cache = {k: d[k] for k in ("msd", "mtt")}
    oof = {k: np.load(RUN / f"oof_{k}.npy").astype(np.float64)
           for k in ("cldnn", "ensemble", "musicnn", "fused")}
    for k, v in oof.items():
        assert v.shape == (720, 4), (k, v.shape)
    return labels, folds, cache, oof


def features(patches: np.ndarray, stats: str) -> np.ndarray:
    """Clip features (n, d) from (n, 3, 200) patches: 'mean', 'ms' (mean+std, = serving
    pool_embedding), 'msmax', 'msmm' (mean+std+max+min, i.e. the sorted triple), 'cat'
    (the 3 patches in window order)."""
    p = patches.astype(np.float64)
    parts = {"mean": [p.mean(1)], "ms": [p.mean(1), p.std(1)],
             "msmax": [p.mean(1), p.std(1), p.max(1)],
             "msmm": [p.mean(1), p.std(1), p.max(1), p.min(1)],
             "cat": [p.reshape(len(p), -1)]}[stats]
    return np.concatenate(parts, axis=1).astype(np.float32)


# --- metrics (same definitions as train/metrics.quadrant_metrics) ---------------------------

def macro_f1(y, pred):
    cm = np.bincount(y * 4 + pred, minlength=16).reshape(4, 4)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1.mean())


def quadrant_metrics(y, p):
    pred = p.argmax(1)
    return {"macro_f1": macro_f1(y, pred), "accuracy": float(np.mean(pred == y)),
            "valence_accuracy": float(np.mean((p[:, 0] + p[:, 3] > 0.5) == np.isin(y, (0, 3)))),
            "arousal_accuracy": float(np.mean((p[:, 0] + p[:, 1] > 0.5) == np.isin(y, (0, 1))))}


def per_fold(y, p, folds):
    by = [quadrant_metrics(y[folds == k], p[folds == k]) for k in range(5)]
    out = {}
    for key in by[0]:
        v = [m[key] for m in by]
        out[key + "_mean"], out[key + "_std"] = float(np.mean(v)), float(np.std(v))
    out["folds_macro_f1"] = [round(m["macro_f1"], 4) for m in by]
    return out


# --- heads --------------------------------------------------------------------------------

class SeedAvgMLP(BaseEstimator, ClassifierMixin):
    """L-BFGS MLP; probabilities averaged over ``n_seeds`` initialisations."""

    def __init__(self, hidden=(64,), alpha=1.0, n_seeds=1, max_iter=500):
        self.hidden, self.alpha, self.n_seeds, self.max_iter = hidden, alpha, n_seeds, max_iter

    def fit(self, x, y):
        self.models_ = [MLPClassifier(hidden_layer_sizes=self.hidden, alpha=self.alpha,
                                      solver="lbfgs", max_iter=self.max_iter,
                                      random_state=s).fit(x, y) for s in range(self.n_seeds)]
        self.classes_ = self.models_[0].classes_
        return self

    def predict_proba(self, x):
        return np.mean([m.predict_proba(x) for m in self.models_], axis=0)

    def predict(self, x):
        return self.classes_[self.predict_proba(x).argmax(1)]


class AvgHeads(BaseEstimator, ClassifierMixin):
    """Mean probabilities of several fixed pipelines (each with its own tuned params)."""

    def __init__(self, members=()):
        self.members = members

    def fit(self, x, y):
        self.fitted_ = [clone(m).fit(x, y) for m in self.members]
        self.classes_ = self.fitted_[0].classes_
        return self

    def predict_proba(self, x):
        return np.mean([m.predict_proba(x) for m in self.fitted_], axis=0)

    def predict(self, x):
        return self.classes_[self.predict_proba(x).argmax(1)]


C_LR = [1e-4, 3e-4, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
C_SHIPPED = [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3]  # train/musicnn_embed._heads


def lr(scale="std", pca=None):
    steps = {"std": [StandardScaler()], "none": [],
             "l2std": [Normalizer(), StandardScaler()]}[scale]
    if pca:
        steps = [*steps, PCA(whiten=True, random_state=0)]
    return make_pipeline(*steps, LogisticRegression(max_iter=5000))


def rbf_grid(d):
    return {"svc__C": [0.3, 1, 3, 10], "svc__gamma": [0.3 / d, 1 / d, 3 / d]}


def head_specs(dims):
    """name -> (features, estimator, grid, refit n_seeds or None)."""
    s = {}
    s["lr-ms-std-shippedgrid"] = ("ms", lr(), {"logisticregression__C": C_SHIPPED})
    for f in ("ms", "mean", "msmax", "msmm", "cat"):
        s[f"lr-{f}-std"] = (f, lr(), {"logisticregression__C": C_LR})
    s["lr-ms-none"] = ("ms", lr("none"), {"logisticregression__C": C_LR})
    s["lr-ms-l2std"] = ("ms", lr("l2std"), {"logisticregression__C": C_LR})
    for f in ("ms", "msmax"):
        s[f"lr-{f}-pcawhiten"] = (f, lr(pca=True), {
            "pca__n_components": [32, 64, 128], "logisticregression__C": [0.001, 0.01, 0.1, 1]})
    for f in ("ms", "msmax"):
        s[f"linsvm-{f}-std"] = (f, make_pipeline(StandardScaler(), SVC(
            kernel="linear", probability=True, random_state=0)),
            {"svc__C": [1e-4, 3e-4, 0.001, 0.003, 0.01]})
        s[f"rbfsvm-{f}-std"] = (f, make_pipeline(StandardScaler(), SVC(
            kernel="rbf", probability=True, random_state=0)), rbf_grid(dims[f]))
    for f in ("ms", "msmax", "mean"):
        s[f"lda-{f}-shrink"] = (f, make_pipeline(StandardScaler(), LinearDiscriminantAnalysis(
            solver="lsqr")), {"lineardiscriminantanalysis__shrinkage":
                              ["auto", 0.1, 0.3, 0.5, 0.7, 0.9]})
    # L-BFGS MLPs cost ~2-5 s a fit here: one feature set, 300 iterations, 6 grid points
    # searched with 1 seed, the outer refit averaged over 3 seeds.
    s["mlp-ms-std"] = ("ms", make_pipeline(StandardScaler(), SeedAvgMLP(max_iter=300)),
                       {"seedavgmlp__hidden": [(32,), (128,)],
                        "seedavgmlp__alpha": [1.0, 10.0, 100.0]}, 3)
    return s


def nested_head(x, y, folds, est, grid, n_seeds=None):
    oof = np.zeros((len(y), 4))
    chosen, inner = [], []
    for k in range(5):
        tr, te = folds != k, folds == k
        search = GridSearchCV(clone(est), grid, scoring="f1_macro", cv=PredefinedSplit(folds[tr]),
                              n_jobs=1, refit=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(x[tr], y[tr])
            final = clone(est).set_params(**search.best_params_)
            if n_seeds:
                final.set_params(seedavgmlp__n_seeds=n_seeds)
            final.fit(x[tr], y[tr])
        oof[te] = final.predict_proba(x[te])
        chosen.append({k2.split("__")[-1]: (v if not isinstance(v, float) else float(f"{v:.4g}"))
                       for k2, v in search.best_params_.items()})
        inner.append(float(search.best_score_))
    return oof, chosen, inner


def run_head(name, x, y, folds, est, grid, n_seeds=None):
    path = CACHE / f"{name}.npz"
    if path.is_file():
        d = np.load(path, allow_pickle=False)
        return d["oof"], json.loads(str(d["chosen"])), list(d["inner"]), float(d["cpu"])
    t = time.process_time()
    oof, chosen, inner = nested_head(x, y, folds, est, grid, n_seeds)
    cpu = time.process_time() - t
    np.savez(path, oof=oof, chosen=json.dumps(chosen), inner=np.array(inner), cpu=cpu)
    return oof, chosen, inner, cpu


# --- fusion rules -------------------------------------------------------------------------

EPS = 1e-6


def weight_grid(n, step=0.05):  # same order as train/pipeline.weight_grid
    units = round(1 / step)
    return np.array([c for c in itertools.product(range(units + 1), repeat=n)
                     if sum(c) == units], dtype=np.float64) / units


GRID3 = weight_grid(3)


def arith(ps, w):
    return np.einsum("m,m...->...", w, np.stack(ps)) / w.sum()


def geo(ps, w):
    return softmax(np.einsum("m,m...->...", w, np.log(np.stack(ps) + EPS)), axis=-1)


def nll(y, p):
    return float(-np.mean(np.log(p[np.arange(len(y)), y] + EPS)))


def fit_temperature(p, y):
    lp = np.log(p + EPS)
    r = minimize_scalar(lambda t: nll(y, softmax(lp / np.exp(t), axis=1)),
                        bounds=(-3, 3), method="bounded")
    return float(np.exp(r.x))


def apply_temperature(p, t):
    return softmax(np.log(p + EPS) / t, axis=1)


def grid_fit(combine, criterion="f1"):
    def fit(ps, y):
        if criterion == "f1":
            scores = [macro_f1(y, combine(ps, w).argmax(1)) for w in GRID3]
            return {"w": GRID3[int(np.argmax(scores))]}
        scores = [-nll(y, combine(ps, w)) for w in GRID3]
        return {"w": GRID3[int(np.argmax(scores))]}

    def apply(params, ps):
        return combine(ps, params["w"])
    return fit, apply


def temp_fit(combine):
    inner_fit, inner_apply = grid_fit(combine)

    def fit(ps, y):
        ts = [fit_temperature(p, y) for p in ps]
        params = inner_fit([apply_temperature(p, t) for p, t in zip(ps, ts, strict=False)], y)
        params["t"] = ts
        return params

    def apply(params, ps):
        return inner_apply(params, [apply_temperature(p, t)
                                    for p, t in zip(ps, params["t"], strict=False)])
    return fit, apply


def stack_fit(use_log=True, cs=(0.01, 0.1, 1.0, 10.0)):
    """Multinomial LR on the concatenated (log-)probabilities; C by leave-one-fold-out over
    the folds it is given (fold ids are passed through ``ps`` as an extra item)."""
    def feats(ps):
        return np.concatenate([np.log(p + EPS) if use_log else p for p in ps], axis=1)

    def fit(ps, y, f):
        x = feats(ps)
        best, best_s = None, -1
        for c in cs:
            pred = np.zeros(len(y), dtype=int)
            for j in np.unique(f):
                m = LogisticRegression(C=c, max_iter=2000).fit(x[f != j], y[f != j])
                pred[f == j] = m.predict(x[f == j])
            s = macro_f1(y, pred)
            if s > best_s:
                best, best_s = c, s
        return {"model": LogisticRegression(C=best, max_iter=2000).fit(x, y), "C": best}

    def apply(params, ps):
        return params["model"].predict_proba(feats(ps))
    return fit, apply


RULES = {
    "arith-f1 (shipped)": grid_fit(arith),
    "arith-nll": grid_fit(arith, "nll"),
    "geo-f1": grid_fit(geo),
    "temp+arith-f1": temp_fit(arith),
    "stackLR-logp": stack_fit(True),
    "stackLR-p": stack_fit(False),
}


def fit_rule(rule, ps, y, f):
    fit, _ = RULES[rule]
    return fit(ps, y, f) if rule.startswith("stack") else fit(ps, y)


def nested_fuse(rule, ps, y, folds):
    """Each outer fold fused with parameters fitted on the other four folds' OOF."""
    _, apply = RULES[rule]
    out = np.zeros_like(ps[0])
    params = []
    for k in range(5):
        tr, te = folds != k, folds == k
        prm = fit_rule(rule, [p[tr] for p in ps], y[tr], folds[tr])
        out[te] = apply(prm, [p[te] for p in ps])
        params.append({"w": prm["w"].round(2).tolist()} if "w" in prm else {"C": prm["C"]})
        if "t" in prm:
            params[-1]["t"] = [round(t, 2) for t in prm["t"]]
    return out, params


def inner_fused_score(rule, ps, y, folds, k):
    """Mean macro-F1 over j != k of fold j fused with parameters fitted on folds not in
    {k, j}: the score a (head, rule) pair gets without looking at fold k."""
    _, apply = RULES[rule]
    s = []
    for j in range(5):
        if j == k:
            continue
        tr, te = (folds != k) & (folds != j), folds == j
        prm = fit_rule(rule, [p[tr] for p in ps], y[tr], folds[tr])
        s.append(macro_f1(y[te], apply(prm, [p[te] for p in ps]).argmax(1)))
    return float(np.mean(s))


# --- report helpers -----------------------------------------------------------------------

def row(name, m, extra=""):
    return (f"| {name} | {m['macro_f1_mean']:.3f} ± {m['macro_f1_std']:.3f} | "
            f"{m['accuracy_mean']:.3f} | {m['valence_accuracy_mean']:.3f} | "
            f"{m['arousal_accuracy_mean']:.3f} | "
            f"{' '.join(f'{v:.3f}' for v in m['folds_macro_f1'])}"
            f" | {extra} |")


HEADER = ("| {} | macro-F1 | acc | valence acc | arousal acc | per fold F1 | notes |\n"
          "|---|---|---|---|---|---|---|")


def main():
    y, folds, cache, oof = load()
    log = []

    def say(s=""):
        print(s, flush=True)
        log.append(s)

    CACHE.mkdir(parents=True, exist_ok=True)
    base = [oof["cldnn"], oof["ensemble"]]

    # 0. checks: shipped head and shipped nested fusion
    say("## 0. Reproduction checks\n")
    say(HEADER.format("what"))
    say(row("oof_cldnn.npy", per_fold(y, oof["cldnn"], folds)))
    say(row("oof_ensemble.npy", per_fold(y, oof["ensemble"], folds)))
    say(row("oof_musicnn.npy (shipped head)", per_fold(y, oof["musicnn"], folds)))
    say(row("oof_fused.npy (shipped)", per_fold(y, oof["fused"], folds)))
    fused, prm = nested_fuse("arith-f1 (shipped)", [*base, oof["musicnn"]], y, folds)
    say(row("re-fused here: arith-f1 nested", per_fold(y, fused, folds),
            f"w per fold {[p['w'] for p in prm]}; max |diff| vs oof_fused "
            f"{np.abs(fused - oof['fused']).max():.1e}"))

    # 1. heads on MSD W3 P1
    msd = cache["msd"][:, W3P1]
    feats = {f: features(msd, f) for f in ("mean", "ms", "msmax", "msmm", "cat")}
    specs = head_specs({f: v.shape[1] for f, v in feats.items()})
    heads = {}
    for name, spec in specs.items():
        f, est, grid = spec[:3]
        n_seeds = spec[3] if len(spec) > 3 else None
        o, chosen, inner, cpu = run_head(name, feats[f], y, folds, est, grid, n_seeds)
        heads[name] = {"oof": o, "chosen": chosen, "inner": inner, "cpu": cpu,
                       "dim": feats[f].shape[1]}
        print(f"  {name}: {per_fold(y, o, folds)['macro_f1_mean']:.3f} ({cpu:.0f} s cpu)",
              flush=True)
    # average of three head families (their own nested params), a priori choice
    avg_members = ["lr-ms-std", "rbfsvm-ms-std", "lda-ms-shrink"]
    heads["avg(lr,rbfsvm,lda)-ms"] = {
        "oof": np.mean([heads[m]["oof"] for m in avg_members], axis=0), "chosen": "members'",
        "inner": [np.nan] * 5, "cpu": sum(heads[m]["cpu"] for m in avg_members), "dim": 400}
    # head family chosen per outer fold by the inner CV score (honest selection)
    auto = np.zeros((720, 4))
    auto_pick = []
    cands = [n for n in specs]
    for k in range(5):
        best = max(cands, key=lambda n: heads[n]["inner"][k])
        auto[folds == k] = heads[best]["oof"][folds == k]
        auto_pick.append(best)
    heads["auto: head chosen by inner CV"] = {"oof": auto, "chosen": auto_pick,
                                             "inner": [np.nan] * 5, "cpu": 0, "dim": 0}

    say("\n## 1. Heads on MSD, W3 P1 (3 patches per clip), nested 5-fold\n")
    say(HEADER.format("head-features-scaling") + "")
    head_metrics = {n: per_fold(y, h["oof"], folds) for n, h in heads.items()}
    fused_cur = {}
    for n in heads:
        fused_cur[n] = per_fold(y, nested_fuse("arith-f1 (shipped)", [*base, heads[n]["oof"]],
                                               y, folds)[0], folds)
    for n in sorted(heads, key=lambda n: -head_metrics[n]["macro_f1_mean"]):
        h = heads[n]
        ch = h["chosen"] if isinstance(h["chosen"], str) else (
            "; ".join(str(c) if isinstance(c, str) else
                      ",".join(f"{v}" for v in c.values()) for c in h["chosen"]))
        say(row(n, head_metrics[n], f"dim {h['dim']}, inner F1 "
                f"{np.nanmean(h['inner']):.3f}, cpu {h['cpu']:.0f}s, fused(arith) "
                f"{fused_cur[n]['macro_f1_mean']:.3f}; chosen: {ch}"))

    # 2. fusion rules
    say("\n## 2. Fusion rules on [CLDNN, ensemble, head], nested\n")
    best_heads = sorted([n for n in heads if not n.startswith("auto")],
                        key=lambda n: -head_metrics[n]["macro_f1_mean"])[:6]
    fusion_heads = ["shipped oof_musicnn", *best_heads, "auto: head chosen by inner CV"]
    heads["shipped oof_musicnn"] = {"oof": oof["musicnn"]}
    results = {}
    for n in fusion_heads:
        say(f"\n### head: {n}\n")
        say(HEADER.format("rule"))
        for rule in RULES:
            p, prm = nested_fuse(rule, [*base, heads[n]["oof"]], y, folds)
            m = per_fold(y, p, folds)
            results[(n, rule)] = m
            say(row(rule, m, "; ".join(
                ",".join(f"{v}" for v in q.get("w", [])) + (f" C={q['C']}" if "C" in q else "")
                + (f" T={q['t']}" if "t" in q else "") for q in prm)))

    # 3. fully nested choice of (head, rule): per outer fold, the pair with the best inner
    # fused score (fusion refitted on 3 folds, scored on the 4th, never on fold k)
    say("\n## 3. Fully nested selection of (head, fusion rule)\n")
    pairs = [(n, r) for n in fusion_heads if not n.startswith("auto") for r in RULES]
    sel = np.zeros((720, 4))
    picks = []
    for k in range(5):
        scores = {pr: inner_fused_score(pr[1], [*base, heads[pr[0]]["oof"]], y, folds, k)
                  for pr in pairs}
        best = max(scores, key=scores.get)
        picks.append(f"{best[0]} / {best[1]} (inner {scores[best]:.3f})")
        _, apply = RULES[best[1]]
        ps = [*base, heads[best[0]]["oof"]]
        prm = fit_rule(best[1], [p[folds != k] for p in ps], y[folds != k], folds[folds != k])
        sel[folds == k] = apply(prm, [p[folds == k] for p in ps])
    m_sel = per_fold(y, sel, folds)
    say(HEADER.format("procedure"))
    say(row(f"best of {len(pairs)} (head, rule) pairs, chosen per fold on inner folds", m_sel))
    for k, pk in enumerate(picks):
        say(f"- fold {k}: {pk}")

    # 4. information: MSD+MTT at W3 P1 (2x cost)
    say("\n## 4. Information only: MSD+MTT, W3 P1 (two networks, about 2x the cost)\n")
    mtt = cache["mtt"][:, W3P1]
    say(HEADER.format("head (msd+mtt)"))
    both = {}
    for name, f in (("lr-ms-std", "ms"), ("lda-ms-shrink", "ms"), ("rbfsvm-ms-std", "ms")):
        x = np.concatenate([features(msd, f), features(mtt, f)], axis=1)
        spec = specs[name]
        g = spec[2] if not name.startswith("rbf") else rbf_grid(x.shape[1])
        o, chosen, inner, cpu = run_head("msd+mtt-" + name, x, y, folds, spec[1], g)
        both[name] = o
        fm = {r: per_fold(y, nested_fuse(r, [*base, o], y, folds)[0], folds)
              for r in ("arith-f1 (shipped)", "geo-f1", "stackLR-logp")}
        say(row(f"msd+mtt {name}", per_fold(y, o, folds), "fused: " + ", ".join(
            f"{r} {v['macro_f1_mean']:.3f} (V {v['valence_accuracy_mean']:.3f}, "
            f"A {v['arousal_accuracy_mean']:.3f})" for r, v in fm.items())))

    # 5. robustness of the head ranking: re-split the clips into 3 other artist-disjoint,
    # quadrant-stratified 5-fold partitions and re-run the whole nested head CV (head only:
    # the CLDNN/ensemble OOFs exist for the official folds only, so no fusion here).
    from sklearn.model_selection import StratifiedGroupKFold
    say("\n## 5. Head ranking on 3 other artist-disjoint 5-fold partitions (head alone)\n")
    rep_heads = ["lr-ms-std", "lr-msmm-std", "lr-ms-none", "linsvm-msmax-std",
                 "rbfsvm-msmax-std"]
    say("| head | official folds | seed 1 | seed 2 | seed 3 | mean of 3 re-splits |")
    say("|---|---|---|---|---|---|")
    for name in rep_heads:
        f, est, grid = specs[name][:3]
        vals = []
        for seed in (1, 2, 3):
            alt = np.zeros(720, dtype=int)
            for i, (_, te) in enumerate(StratifiedGroupKFold(5, shuffle=True, random_state=seed)
                                         .split(feats[f], y, ARTISTS)):
                alt[te] = i
            o, *_ = run_head(f"resplit{seed}-{name}", feats[f], y, alt, est, grid)
            vals.append(per_fold(y, o, alt)["macro_f1_mean"])
        say(f"| {name} | {head_metrics[name]['macro_f1_mean']:.3f} | "
            + " | ".join(f"{v:.3f}" for v in vals) + f" | {np.mean(vals):.3f} |")

    # 6. paired clip bootstrap (within folds) of the fused macro-F1 gain over the shipped rule
    say("\n## 6. Paired bootstrap of the fused gain over the shipped 0.752 (B=2000, clips "
        "resampled within each fold, mean of the 5 fold F1s)\n")
    say("| head / rule | fused F1 | gain | 95% interval of the gain | P(gain <= 0) |")
    say("|---|---|---|---|---|")
    ref = oof["fused"]
    rng = np.random.default_rng(0)
    idx = {k: np.flatnonzero(folds == k) for k in range(5)}
    boots = [{k: rng.choice(idx[k], len(idx[k])) for k in range(5)} for _ in range(2000)]
    top = sorted(results, key=lambda key: -results[key]["macro_f1_mean"])[:5]
    for key in top:
        p, _ = nested_fuse(key[1], [*base, heads[key[0]]["oof"]], y, folds)
        pa, ra = p.argmax(1), ref.argmax(1)
        d = np.array([np.mean([macro_f1(y[b[k]], pa[b[k]]) - macro_f1(y[b[k]], ra[b[k]])
                               for k in range(5)]) for b in boots])
        gain = results[key]["macro_f1_mean"] - per_fold(y, ref, folds)["macro_f1_mean"]
        say(f"| {key[0]} / {key[1]} | {results[key]['macro_f1_mean']:.3f} | {gain:+.3f} | "
            f"[{np.percentile(d, 2.5):+.3f}, {np.percentile(d, 97.5):+.3f}] | "
            f"{np.mean(d <= 0):.2f} |")

    n_head = len(specs) + 1  # + the a-priori average
    n_fusion = len(fusion_heads) * len(RULES)
    say(f"\nSettings scored on the outer folds: {n_head} heads (+1 inner-selected), "
        f"{len(heads) - 1} head OOFs fused with the shipped rule, {n_fusion} (head, rule) "
        f"fusion results, 9 MSD+MTT results.")
    say(f"\nTotal CPU time (process, this run incl. cached parts reloaded): "
        f"{time.process_time() - T0:.0f} s")
    (OUT / "results.md").write_text("\n".join(log) + "\n", encoding="utf-8")
    json.dump({"heads": head_metrics, "fused_arith": fused_cur,
               "fusion": {f"{a} | {b}": v for (a, b), v in results.items()},
               "nested_selection": m_sel, "picks": picks},
              (OUT / "results.json").open("w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
