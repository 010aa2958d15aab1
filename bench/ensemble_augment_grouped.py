#!/usr/bin/env python
"""Follow-up: group-aware internal stacking CV for the codec-augmented ensemble.

  nice -n 10 .venv/bin/python bench/ensemble_augment_grouped.py fit VARIANT [VARIANT ...]
  nice -n 10 .venv/bin/python bench/ensemble_augment_grouped.py eval  # tables, results2.json

Variants (all: shipped best_params, outer artist-disjoint folds as run.py):
  A1n   originals, stack cv = StratifiedGroupKFold(5) (groups trivial), no SMOTE
  B1s   orig + 3 codecs, stack cv grouped by clip, SMOTE kept (synthetic rows -> group of
        nearest original training row in PCA space)
  B1n   orig + 3 codecs, grouped stack cv, no SMOTE
  C1n   orig + Opus copy only, grouped stack cv, no SMOTE
  C1s   orig + Opus copy only, grouped stack cv, SMOTE kept
Shipped references A0 / B0 are read from ensemble_augment.py's oof_ensemble_variants.npz.
"""
from __future__ import annotations

import json
import sys
import time

import ensemble_augment as run  # threads=1, sys.path, CACHE, helpers
import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neighbors import NearestNeighbors

from train.ensemble import build_ensemble
from train.pipeline import CODECS, load_data

CACHE = run.CACHE
OPUS = "opus-96k-48k-stereo"
VARIANTS = {"A1n": ([], False), "B1s": (list(CODECS), True), "B1n": (list(CODECS), False),
            "C1n": ([OPUS], False), "C1s": ([OPUS], True)}


def fit_grouped(base, x, y, groups, smote: bool, seed=None):
    """Scale -> PCA -> [SMOTE] -> Stacking(cv = StratifiedGroupKFold over clip groups).
    Returns a predict_proba callable (SMOTE skipped at predict, as in the imblearn Pipeline)."""
    steps = dict(base.named_steps)
    scale = clone(steps["scale"]).fit(x)
    pca = clone(steps["pca"]).fit(scale.transform(x))
    z = pca.transform(scale.transform(x))
    zs, ys, gs = z, y, groups
    added = 0
    if smote:
        zs, ys = clone(steps["smote"]).fit_resample(z, y)
        added = len(zs) - len(z)
        assert np.array_equal(zs[:len(z)], z)  # originals first, synthetic appended
        if added:
            nn = NearestNeighbors(n_neighbors=1).fit(z)
            gs = np.concatenate([groups, groups[nn.kneighbors(zs[len(z):])[1][:, 0]]])
    cvs = (StratifiedGroupKFold(n_splits=5) if seed is None else
           StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed))
    splits = list(cvs.split(zs, ys, gs))
    for tr, te in splits:
        assert not set(gs[tr]) & set(gs[te])
    stack = clone(steps["stack"]).set_params(cv=splits).fit(zs, ys)
    assert list(stack.classes_) == ["Q1", "Q2", "Q3", "Q4"]
    return (lambda xt: stack.predict_proba(pca.transform(scale.transform(xt)))), added, stack


def fit(variant: str) -> None:
    # "NAME-sK": variant NAME with the internal grouped folds shuffled, random_state=K
    seed = int(variant.split("-s")[1]) if "-s" in variant else None
    codecs, smote = VARIANTS[variant.split("-s")[0]]
    data = load_data()
    ids = [c.song_id for c in data.clips]
    labels, folds = data.labels, data.folds
    y = np.array([f"Q{i + 1}" for i in labels])
    x = data.clip_descriptors()
    desc, _ = run.load_encodings(ids)
    params = json.loads((run.RUN / "metrics_ensemble.json").read_text())["best_params"]
    base = build_ensemble().set_params(**params)
    n = len(x)
    x_all = np.concatenate([x, *[desc[c] for c in codecs]])
    y_all = np.tile(y, 1 + len(codecs))
    f_all = np.tile(folds, 1 + len(codecs))
    g_all = np.tile(np.arange(n), 1 + len(codecs))
    tests = {"original": x, **{c: desc[c] for c in CODECS}}
    probs = {t: np.zeros((n, 4)) for t in tests}
    info = {"smote_added": [], "fit_cpu_s": [], "meta_coef": []}
    for k in range(5):
        t0 = time.process_time()
        m = f_all != k
        predict, added, stack = fit_grouped(base, x_all[m], y_all[m], g_all[m], smote, seed)
        info["fit_cpu_s"].append(round(time.process_time() - t0, 1))
        info["smote_added"].append(int(added))
        c = np.abs(stack.final_estimator_.coef_)
        info["meta_coef"].append({"svm": round(float(c[:, :4].sum()), 2),
                                  "tree": round(float(c[:, 4:8].sum()), 2),
                                  "forest": round(float(c[:, 8:12].sum()), 2)})
        for t, xt in tests.items():
            probs[t][folds == k] = predict(xt[folds == k])
        print(variant, k, info["fit_cpu_s"][-1], "s", flush=True)
    np.savez(CACHE / f"run2-{variant}.npz", **probs, info=json.dumps(info))


def calib(labels, p):
    from sklearn.metrics import log_loss
    return {"mean_top_prob": round(float(p.max(1).mean()), 3),
            "acc": round(float((p.argmax(1) == labels).mean()), 3),
            "log_loss": round(float(log_loss(labels, p, labels=[0, 1, 2, 3])), 3)}


def evaluate(variants: list[str]) -> None:
    from mer_models.fusion import fuse
    from train.metrics import per_fold, quadrant_metrics
    from train.pipeline import nested_fusion
    data = load_data()
    ids = [c.song_id for c in data.clips]
    labels, folds = data.labels, data.folds
    old = np.load(CACHE / "oof_ensemble_variants.npz")
    allp = {"A0": {t: old[f"a_orig__{t}"] for t in ["original", *CODECS]},
            "B0": {t: old[f"b_orig+codecs__{t}"] for t in ["original", *CODECS]}}
    infos = {}
    for v in variants:
        z = np.load(CACHE / f"run2-{v}.npz")
        allp[v] = {t: z[t] for t in ["original", *CODECS]}
        infos[v] = json.loads(str(z["info"]))
    cldnn = np.load(run.RUN / "oof_cldnn.npy")
    musicnn = np.load(run.RUN / "oof_musicnn.npy")
    mus_path = CACHE / "run2-musicnn.npz"
    if mus_path.is_file():
        mus = dict(np.load(mus_path))
    else:
        mus = run._musicnn_predictions(data, ids)
        np.savez(mus_path, **mus)
    assert np.abs(mus["original"] - musicnn).max() < 1e-9
    _, mels = run.load_encodings(ids)
    cl_path = CACHE / "run2-cldnn-fold4.npz"
    enc4 = ["original-served", *CODECS]
    if cl_path.is_file():
        cl4 = dict(np.load(cl_path))
    else:
        cl4 = run._cldnn_fold4({n_: mels[n_] for n_ in enc4})
        np.savez(cl_path, **cl4)
    shipped_w = json.loads((run.RUN / "metrics_fused.json").read_text())["weights"]
    w_ship = [shipped_w["cldnn"], shipped_w["ensemble"], shipped_w["musicnn"]]
    m4 = folds == 4
    out = {}
    for v, d in allp.items():
        r = {"ensemble": {t: run._summary(per_fold(labels, p, folds)) for t, p in d.items()},
             "calib": {t: calib(labels, d[t]) for t in ("original", OPUS)}}
        fused, chosen = nested_fusion([cldnn, d["original"], musicnn], labels, folds, bags=0)
        r["weights"] = {str(k): [round(float(a), 3) for a in w] for k, w in chosen.items()}
        r["fused"] = {"original": run._summary(per_fold(labels, fused, folds))}
        r["calib"]["fused original"] = calib(labels, fused)
        for t in CODECS:
            p = np.zeros_like(fused)
            for k in range(5):
                m = folds == k
                p[m] = fuse([cldnn[m], d[t][m], mus[t][m]], chosen[k])
            r["fused"][t] = run._summary(per_fold(labels, p, folds))
        r["fold4"] = {}
        for t in enc4:
            et = "original" if t == "original-served" else t  # ensemble on cached originals
            fm = quadrant_metrics(labels[m4], fuse([cl4[t], d[et][m4], mus[et][m4]], w_ship))
            r["fold4"][t] = round(fm["macro_f1"], 4)
        if v in infos:
            r["info"] = infos[v]
        out[v] = r
    (run.HERE / "results2.json").write_text(json.dumps(out, indent=1))
    encs = ["original", *CODECS]

    def f1_cells(block: dict) -> str:  # one "mean±std" cell per encoding
        return " | ".join(f"{block[t]['macro_f1_mean']:.3f}±{block[t]['macro_f1_std']:.3f}"
                          for t in encs)

    print("| variant | " + " | ".join(encs) + " | top-p / acc (orig) | top-p / acc (Opus) |")
    for v, r in out.items():
        print(f"| {v} | " + f1_cells(r["ensemble"]) +
              f" | {r['calib']['original']['mean_top_prob']:.2f} / "
              f"{r['calib']['original']['acc']:.2f}"
              f" (ll {r['calib']['original']['log_loss']:.2f})"
              f" | {r['calib'][OPUS]['mean_top_prob']:.2f} / {r['calib'][OPUS]['acc']:.2f} |")
    print("\nfused nested")
    print("| variant | " + " | ".join(encs) + " | val (orig) | ar (orig) | weights |")
    for v, r in out.items():
        f = r["fused"]
        print(f"| {v} | " + f1_cells(f) +
              f" | {f['original']['valence_mean']:.3f} | {f['original']['arousal_mean']:.3f} | "
              f"{sorted(set(tuple(w) for w in r['weights'].values()))} |")
    print("\nfold4 fused (shipped weights)", w_ship)
    for v, r in out.items():
        info = r.get("info", {})
        print(v, r["fold4"], info.get("smote_added"), info.get("meta_coef", [None])[-1])


if __name__ == "__main__":
    if sys.argv[1] == "fit":
        for v in sys.argv[2:]:
            fit(v)
    else:
        evaluate(sys.argv[2:] if len(sys.argv) > 2 else
                 sorted(p.stem[5:] for p in CACHE.glob("run2-*.npz")
                        if p.stem[5:] not in ("musicnn", "cldnn-fold4")))
