#!/usr/bin/env python
"""Does training the descriptor stacking ensemble on codec-augmented copies make it robust?

Run from anywhere (nice'd, BLAS 1 thread, 2 worker processes):

    nice -n 15 .venv/bin/python bench/ensemble_augment.py [extract|evaluate|report|all]
    nice -n 15 .venv/bin/python bench/ensemble_augment_grouped.py   # the grouped-CV follow-up

extract  -- every clip of the 4Q set decoded as served (``original-served``) and re-encoded with
            each codec of ``train.pipeline.CODECS`` (``train.pipeline.encode``), then
            ``load_windows(SERVING)`` -> ``extract_features`` -> ``clip_descriptors``; cached in
            shards of 48 clips under .cache/ensemble-augment/ (resumable), then
            assembled into (720, n_desc) arrays, rows in ``load_data().clips`` order
            (= sorted song_id = splits.csv order, asserted). The log-mel windows of fold 4 are
            kept too, for the CLDNN of runs/r3-noaug (cldnn_fold4.pt).
evaluate -- outer 5-fold CV over the artist-disjoint folds, shipped hyper-parameters fixed
            (runs/r3-noaug/metrics_ensemble.json best_params): (a) originals of the other
            folds, (b) originals + the codec copies of the other folds
            (``train.musicnn_head.with_copies``); every held-out fold predicted on its originals
            and on each encoding. Then nested fusion with the r3-noaug CLDNN and musicnn
            out-of-fold probabilities, and the fused scores on the encodings (musicnn head
            refitted per fold on the cached musicnn embeddings of the codec copies; CLDNN on
            codecs exact for fold 4, its original-clip predictions as a stand-in elsewhere).
            Writes results.json and REPORT.md in .cache/ensemble-augment/. Figures and
            conclusions: docs/MODEL_REPORT.md, "Augmenting the ensemble".
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from mer_models.audio import load_windows  # noqa: E402
from mer_models.features import FEATURES_VERSION, clip_descriptors, extract_features  # noqa: E402
from train.data import DEFAULT_DATA_ROOT, load_4q  # noqa: E402
from train.pipeline import CODECS, SERVING, encode  # noqa: E402

CACHE = REPO / ".cache" / "ensemble-augment"
RUN = REPO / "runs" / "r3-noaug"
HERE = REPO / ".cache" / "ensemble-augment"
SHARD = 48
WORKERS = 2
#: What is extracted: None = the original file decoded as served, else ffmpeg args.
ENCODINGS: dict[str, list[str] | None] = {"original-served": None, **CODECS}
LOGMEL_FOLD = 4

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
log = logging.getLogger("exp_ens")


def _nice() -> None:
    try:
        current = os.nice(0)
        if current < 15:
            os.nice(15 - current)
    except OSError:
        pass


def _key(name: str, song_ids: list[str]) -> str:
    payload = {"how": ENCODINGS[name], "analysis": SERVING.preprocessing(),
               "n_windows": SERVING.n_windows, "max_duration": SERVING.max_duration,
               "features_version": FEATURES_VERSION, "clips": song_ids}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _shard_job(job: tuple[str, list[str], list[str], list[bool], str]) -> tuple[str, float]:
    """Descriptors of one shard of clips under one encoding, saved to ``out``."""
    name, ids, paths, keep_logmel, out = job
    t0 = time.process_time()
    args = ENCODINGS[name]
    desc, logmel, logmel_ids = [], [], []
    with tempfile.TemporaryDirectory(prefix="exp_ens-") as tmp:
        for sid, path, keep in zip(ids, paths, keep_logmel, strict=True):
            source = Path(path) if args is None else encode(Path(path), Path(tmp), args)
            feats = extract_features(load_windows(source, SERVING).windows, SERVING)
            desc.append(clip_descriptors(feats.descriptors))
            if keep:
                logmel.append(feats.logmel.astype(np.float16))
                logmel_ids.append(sid)
            if args is not None:
                source.unlink(missing_ok=True)
    tmp_out = out + ".tmp.npz"
    np.savez(tmp_out, song_ids=np.array(ids), descriptors=np.stack(desc),
             logmel=(np.stack(logmel) if logmel else np.zeros((0, 1), np.float16)),
             logmel_ids=np.array(logmel_ids))
    os.replace(tmp_out, out)
    return out, time.process_time() - t0


def assembled_paths(name: str, key: str) -> tuple[Path, Path]:
    return CACHE / f"{name}-{key}.npy", CACHE / f"{name}-{key}-logmel-fold{LOGMEL_FOLD}.npy"


def extract(names: list[str] | None = None) -> dict[str, float]:
    """Extract (or find cached) every encoding; return wall seconds per encoding."""
    import resource

    CACHE.mkdir(parents=True, exist_ok=True)
    clips = load_4q(DEFAULT_DATA_ROOT)
    ids = [c.song_id for c in clips]
    names = names or list(ENCODINGS)
    jobs, todo = [], {}
    for name in names:
        key = _key(name, ids)
        desc_path, _ = assembled_paths(name, key)
        if desc_path.is_file():
            log.info("%s: cached %s", name, desc_path.name)
            continue
        shards = []
        for start in range(0, len(clips), SHARD):
            part = clips[start:start + SHARD]
            out = CACHE / "shards" / f"{name}-{key}-{start // SHARD:02d}.npz"
            shards.append(out)
            if not out.is_file():
                jobs.append((name, [c.song_id for c in part], [str(c.path) for c in part],
                             [c.fold == LOGMEL_FOLD for c in part], str(out)))
        todo[name] = (key, shards)
    (CACHE / "shards").mkdir(exist_ok=True)
    t0 = time.time()
    if jobs:
        log.info("%d shards to extract (%d clips each)", len(jobs), SHARD)
        with ProcessPoolExecutor(max_workers=WORKERS, initializer=_nice) as pool:
            futures = [pool.submit(_shard_job, job) for job in jobs]
            for i, future in enumerate(as_completed(futures), 1):
                out, cpu = future.result()
                log.info("[%d/%d] %s (%.0f s CPU, %.0f s wall so far)", i, len(jobs),
                         Path(out).name, cpu, time.time() - t0)
    for name, (key, shards) in todo.items():
        parts = [np.load(s) for s in shards]
        got = np.concatenate([p["song_ids"] for p in parts]).tolist()
        assert got == ids, f"{name}: shard order differs from the clips"
        desc_path, mel_path = assembled_paths(name, key)
        np.save(mel_path, np.concatenate([p["logmel"] for p in parts if len(p["logmel_ids"])]))
        np.save(desc_path, np.concatenate([p["descriptors"] for p in parts]).astype(np.float32))
        log.info("%s: assembled %s", name, desc_path.name)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": round(time.time() - t0, 1),
            "children_cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}


def load_encodings(ids: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    desc, mel = {}, {}
    for name in ENCODINGS:
        desc_path, mel_path = assembled_paths(name, _key(name, ids))
        if desc_path.is_file():
            desc[name] = np.load(desc_path)
            mel[name] = np.load(mel_path)
    return desc, mel


# --- evaluation ------------------------------------------------------------------------------

def _musicnn_inputs(data, song_ids):
    """Cached musicnn embeddings (originals, codec copies) of the serving layout; a cache
    miss raises instead of re-encoding (minutes of CPU)."""
    import train.musicnn_head as mh
    from train.musicnn_embed import CACHE_DIR

    def refuse(*_a, **_k):
        raise RuntimeError("musicnn augmentation cache miss; not recomputing")

    metrics = json.loads((RUN / "metrics_musicnn.json").read_text())
    mh.encode, mh.load_windows = refuse, refuse  # type: ignore[assignment]
    x, extra = mh.training_embeddings(DEFAULT_DATA_ROOT, song_ids, metrics["layout"], SERVING,
                                      cache_dir=CACHE_DIR, networks=tuple(metrics["extracted"]),
                                      augment=True)
    return x, extra, metrics


def _musicnn_predictions(data, song_ids):
    """Per-fold musicnn head (r3-noaug: not augmented, C chosen per fold) on originals and
    on each codec copy of the held-out fold."""
    import warnings

    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    from train.musicnn_embed import _heads

    x, extra, metrics = _musicnn_inputs(data, song_ids)
    estimator, _ = _heads()[metrics["layout"]["head"]]
    inputs = {"original": x, **{k: v for k, v in extra.items() if k in CODECS}}
    out = {k: np.zeros((len(x), 4)) for k in inputs}
    for chosen in metrics["chosen"]:
        k = chosen["fold"]
        head = clone(estimator).set_params(**{a: b for a, b in chosen.items() if "__" in a})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            head.fit(x[data.folds != k], data.labels[data.folds != k])
        for name, xe in inputs.items():
            out[name][data.folds == k] = head.predict_proba(xe[data.folds == k])
    return out


def _cldnn_fold4(mels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    from train.cldnn import Cldnn
    from train.pipeline import clip_probabilities

    torch.set_num_threads(1)
    model = Cldnn.from_checkpoint(torch.load(RUN / f"cldnn_fold{LOGMEL_FOLD}.pt",
                                             weights_only=True))
    return {name: clip_probabilities(model, m.astype(np.float32)) for name, m in mels.items()}


def _summary(m: dict) -> dict:
    return {"macro_f1_mean": round(m["macro_f1_mean"], 4),
            "macro_f1_std": round(m["macro_f1_std"], 4),
            "valence_mean": round(m["valence_accuracy_mean"], 4),
            "arousal_mean": round(m["arousal_accuracy_mean"], 4),
            "pooled_macro_f1": round(m["pooled"]["macro_f1"], 4),
            "folds": {str(k): round(v["macro_f1"], 4) for k, v in m["folds"].items()}}


def evaluate() -> dict:
    from sklearn.base import clone

    from mer_models.fusion import fuse
    from train.ensemble import build_ensemble
    from train.metrics import per_fold, quadrant_metrics
    from train.musicnn_head import with_copies
    from train.pipeline import load_data, nested_fusion

    t_start = time.time()
    data = load_data()
    ids = [c.song_id for c in data.clips]
    import csv
    with (DEFAULT_DATA_ROOT / "4q" / "splits.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert ids == [r["song_id"] for r in rows], "clips order != splits.csv order"
    assert data.features.song_ids.tolist() == ids
    assert data.folds.tolist() == [int(r["fold"]) for r in rows]
    labels, folds = data.labels, data.folds
    y = np.array([f"Q{i + 1}" for i in labels])
    x_orig = data.clip_descriptors()
    desc, mels = load_encodings(ids)
    codecs = [c for c in CODECS if c in desc]
    missing = [c for c in CODECS if c not in desc]
    results: dict = {"codecs": codecs, "codecs_missing": missing}

    served = desc.get("original-served")
    if served is not None:  # is Data.clip_descriptors() what serving decodes?
        scale = np.abs(x_orig).mean(axis=0) + 1e-9
        rel = np.abs(served - x_orig) / scale
        results["served_vs_cache"] = {
            "max_abs": float(np.abs(served - x_orig).max()),
            "max_rel_to_feature_scale": float(rel.max()),
            "mean_rel_to_feature_scale": float(rel.mean()),
            "rows_identical": int((np.abs(served - x_orig).max(axis=1) < 1e-4).sum())}

    params = json.loads((RUN / "metrics_ensemble.json").read_text())["best_params"]
    base = build_ensemble().set_params(**params)
    results["params"] = params
    tests = {"original": x_orig, **({"original-served": served} if served is not None else {}),
             **{c: desc[c] for c in codecs}}
    variants = {"a_orig": [], "b_orig+codecs": [desc[c] for c in codecs]}
    probs: dict[str, dict[str, np.ndarray]] = {}
    fit_s: dict[str, list[float]] = {}
    for variant, copies in variants.items():
        x_all, y_all, f_all, _ = with_copies(x_orig, y, folds, copies)
        probs[variant] = {t: np.zeros((len(ids), 4)) for t in tests}
        fit_s[variant] = []
        for k in range(5):
            t0 = time.process_time()
            model = clone(base).fit(x_all[f_all != k], y_all[f_all != k])
            fit_s[variant].append(round(time.process_time() - t0, 1))
            assert list(model.classes_) == ["Q1", "Q2", "Q3", "Q4"]
            for t, xt in tests.items():
                probs[variant][t][folds == k] = model.predict_proba(xt[folds == k])
            log.info("%s fold %d: %.3f on originals (%.0f s fit)", variant, k,
                     quadrant_metrics(labels[folds == k],
                                      probs[variant]["original"][folds == k])["macro_f1"],
                     fit_s[variant][-1])
    np.savez(CACHE / "oof_ensemble_variants.npz",
             **{f"{v}__{t}": p for v, d in probs.items() for t, p in d.items()})
    results["fit_cpu_s"] = fit_s
    shipped = np.load(RUN / "oof_ensemble.npy")
    a = probs["a_orig"]["original"]
    results["baseline_vs_shipped_oof"] = {
        "max_abs_prob_diff": float(np.abs(a - shipped).max()),
        "argmax_agreement": float((a.argmax(1) == shipped.argmax(1)).mean()),
        "shipped_macro_f1_mean": round(per_fold(labels, shipped, folds)["macro_f1_mean"], 4)}

    results["ensemble"] = {v: {t: _summary(per_fold(labels, p, folds)) for t, p in d.items()}
                           for v, d in probs.items()}

    # --- fusion on originals (nested weights) ------------------------------------------------
    cldnn = np.load(RUN / "oof_cldnn.npy")
    musicnn = np.load(RUN / "oof_musicnn.npy")
    mus = _musicnn_predictions(data, ids)
    results["musicnn_refit_vs_shipped_oof_max_abs"] = float(np.abs(mus["original"] - musicnn).max())
    results["musicnn"] = {t: _summary(per_fold(labels, p, folds)) for t, p in mus.items()}
    fusion, weights = {}, {}
    for variant, d in probs.items():
        fused, chosen = nested_fusion([cldnn, d["original"], musicnn], labels, folds, bags=0)
        weights[variant] = chosen
        fusion[variant] = {"original": _summary(per_fold(labels, fused, folds))}
        # encodings: the same per-fold weights; musicnn head exact on the codec copies,
        # CLDNN's original-clip predictions as a stand-in (weight 0.05; CLDNN itself moves
        # 0.607 -> 0.601-0.622 on fold 4 re-encodings)
        for t in codecs:
            p = np.zeros_like(fused)
            for k in range(5):
                m = folds == k
                p[m] = fuse([cldnn[m], d[t][m], mus[t][m]], chosen[k])
            fusion[variant][t] = _summary(per_fold(labels, p, folds))
    results["fusion_weights_per_fold"] = weights
    results["fused_5fold_cldnn_standin"] = fusion

    # --- fold 4, exact (as run_robustness): every model on the served decode ----------------
    m4 = folds == LOGMEL_FOLD
    f4: dict = {}
    if all(n in mels for n in ["original-served", *codecs]):
        cl4 = _cldnn_fold4({n: mels[n] for n in ["original-served", *codecs]})
        _x_mus, _, _ = _musicnn_inputs(data, ids)
        shipped_w = json.loads((RUN / "metrics_fused.json").read_text())["weights"]
        w = [shipped_w["cldnn"], shipped_w["ensemble"], shipped_w["musicnn"]]
        for variant, d in probs.items():
            f4[variant] = {}
            for t in ["original-served", *codecs]:
                mt = "original" if t == "original-served" else t
                parts = {"cldnn": cl4[t], "ensemble": d[t][m4], "musicnn": mus[mt][m4]}
                row = {k: quadrant_metrics(labels[m4], v)["macro_f1"] for k, v in parts.items()}
                fm = quadrant_metrics(labels[m4], fuse(list(parts.values()), w))
                row.update(fused=fm["macro_f1"], fused_valence=fm["valence_accuracy"],
                           fused_arousal=fm["arousal_accuracy"])
                f4[variant][t] = {k: round(v, 4) for k, v in row.items()}
        results["fold4_exact"] = {"weights": w, **f4}
    results["evaluate_wall_s"] = round(time.time() - t_start, 1)
    return results


# --- report ----------------------------------------------------------------------------------

def report(results: dict, timing: dict) -> str:
    ens = results["ensemble"]
    tests = list(ens["a_orig"])
    lines = ["# Codec-augmented training of the descriptor stacking ensemble", "",
             "Generated by `bench/ensemble_augment.py` (rerunnable; caches in "
             "`.cache/ensemble-augment/`).", "",
             "Outer 5-fold CV over the artist-disjoint folds of `splits.csv`, ensemble "
             f"hyper-parameters fixed to the shipped ones ({results['params']}). "
             "(a) trains on the originals of the four other folds; (b) on the originals plus "
             f"their re-encodings ({', '.join(results['codecs'])}). Every held-out fold is "
             "scored on its originals (`original` = cached-window descriptors, as "
             "`Data.clip_descriptors()` / `oof_ensemble.npy`; `original-served` = the same "
             "files decoded as serving does) and on each re-encoding of it.", ""]
    if results["codecs_missing"]:
        lines += [f"**Codecs not run:** {results['codecs_missing']}", ""]
    lines += ["## Ensemble alone (macro-F1 mean ± std over 5 folds; valence / arousal accuracy)",
              "", "| test encoding | (a) originals: F1 | val. | ar. | (b) + codec copies: F1 "
              "| val. | ar. | Δ F1 |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t in tests:
        a, b = ens["a_orig"][t], ens["b_orig+codecs"][t]
        lines.append(f"| {t} | {a['macro_f1_mean']:.3f} ± {a['macro_f1_std']:.3f} | "
                     f"{a['valence_mean']:.3f} | {a['arousal_mean']:.3f} | "
                     f"{b['macro_f1_mean']:.3f} ± {b['macro_f1_std']:.3f} | "
                     f"{b['valence_mean']:.3f} | {b['arousal_mean']:.3f} | "
                     f"{b['macro_f1_mean'] - a['macro_f1_mean']:+.3f} |")
    lines += ["", "Per-fold macro-F1:", "", "| variant | test | " +
              " | ".join(f"fold {k}" for k in range(5)) + " |", "| --- | --- |" + " --- |" * 5]
    for v in ens:
        for t in tests:
            lines.append(f"| {v} | {t} | " + " | ".join(f"{ens[v][t]['folds'][str(k)]:.3f}"
                                                       for k in range(5)) + " |")
    s = results["baseline_vs_shipped_oof"]
    lines += ["", f"Baseline check: (a) on originals vs `runs/r3-noaug/oof_ensemble.npy`: "
              f"max |Δp| {s['max_abs_prob_diff']:.2e}, argmax agreement "
              f"{s['argmax_agreement']:.3f}, shipped macro-F1 {s['shipped_macro_f1_mean']:.4f}."]
    if "served_vs_cache" in results:
        c = results["served_vs_cache"]
        lines += [f"Served decode vs `Data.clip_descriptors()`: {c['rows_identical']}/720 rows "
                  f"identical (|Δ| < 1e-4), max |Δ| {c['max_abs']:.3g} (max "
                  f"{c['max_rel_to_feature_scale']:.3g}, mean {c['mean_rel_to_feature_scale']:.2g}"
                  " of the feature's mean magnitude): the same windows, tiny decode/seek "
                  "differences."]
    lines += [f"Fit CPU seconds per fold: {results['fit_cpu_s']}.", ""]

    fu = results["fused_5fold_cldnn_standin"]
    lines += ["## Fusion [CLDNN, ensemble variant, musicnn head], nested weights (5 folds)", "",
              "Originals: `nested_fusion` on the r3-noaug out-of-fold CLDNN and musicnn "
              "probabilities. Re-encodings: the same per-fold weights; the musicnn head refitted "
              "per fold (r3-noaug head, non-augmented, per-fold C) and applied to the cached "
              "musicnn embeddings of the re-encoded clips; **CLDNN: its original-clip "
              "predictions as a stand-in** (weight 0.05; no CLDNN checkpoints for folds 0-3).",
              "", "| test encoding | (a) fused F1 | val. | ar. | (b) fused F1 | val. | ar. | "
              "Δ F1 | musicnn alone |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t in fu["a_orig"]:
        a, b = fu["a_orig"][t], fu["b_orig+codecs"][t]
        mt = results["musicnn"].get(t, {}).get("macro_f1_mean", float("nan"))
        lines.append(f"| {t} | {a['macro_f1_mean']:.3f} ± {a['macro_f1_std']:.3f} | "
                     f"{a['valence_mean']:.3f} | {a['arousal_mean']:.3f} | "
                     f"{b['macro_f1_mean']:.3f} ± {b['macro_f1_std']:.3f} | "
                     f"{b['valence_mean']:.3f} | {b['arousal_mean']:.3f} | "
                     f"{b['macro_f1_mean'] - a['macro_f1_mean']:+.3f} | {mt:.3f} |")
    lines += ["", f"Nested weights per fold [cldnn, ensemble, musicnn]: "
              f"{results['fusion_weights_per_fold']}.", f"musicnn refit vs shipped "
              f"oof_musicnn.npy max |Δp|: {results['musicnn_refit_vs_shipped_oof_max_abs']:.2e}.",
              ""]
    if "fold4_exact" in results:
        f4 = results["fold4_exact"]
        lines += ["## Fold 4 exactly as `run_robustness` (all three models on the served decode "
                  f"of each encoding, shipped weights {f4['weights']})", "",
                  "| variant | encoding of fold 4 | CLDNN | ensemble | musicnn | fused | "
                  "fused val. | fused ar. |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for v in ("a_orig", "b_orig+codecs"):
            for t, r in f4[v].items():
                lines.append(f"| {v} | {t} | {r['cldnn']:.3f} | {r['ensemble']:.3f} | "
                             f"{r['musicnn']:.3f} | {r['fused']:.3f} | {r['fused_valence']:.3f}"
                             f" | {r['fused_arousal']:.3f} |")
        lines.append("")
    diag = HERE / "diag.json"  # written by diag.py (calibration / stacking diagnosis)
    if diag.is_file():
        lines += ["## Diagnosis (`diag.py`): calibration and the stack's meta-learner", "",
                  "```json", diag.read_text().strip(), "```", ""]
    lines += ["## Timing (seconds; 2-core machine shared with a test run, nice 15)", "",
              f"{json.dumps(timing)}", ""]
    notes = HERE / "NOTES.md"  # hand-written findings and recommendation
    if notes.is_file():
        lines += [notes.read_text().strip(), ""]
    return "\n".join(lines)


def main() -> None:
    _nice()
    stage = sys.argv[1] if len(sys.argv) > 1 else "all"
    timing: dict = {}
    if stage == "report":  # rewrite REPORT.md from results.json without recomputing
        timing = json.loads((HERE / "timing.json").read_text())
        (HERE / "REPORT.md").write_text(report(json.loads((HERE / "results.json").read_text()),
                                               timing))
        return
    if stage in ("extract", "all"):
        timing["extract"] = extract()
    if stage in ("evaluate", "all"):
        t0, c0 = time.time(), time.process_time()
        results = evaluate()
        timing["evaluate"] = {"wall_s": round(time.time() - t0, 1),
                              "cpu_s": round(time.process_time() - c0, 1)}
        prev = HERE / "timing_extract.json"
        if "extract" in timing:
            prev.write_text(json.dumps(timing["extract"]))
        elif prev.is_file():
            timing["extract"] = json.loads(prev.read_text())
        (HERE / "results.json").write_text(json.dumps(results, indent=1))
        (HERE / "timing.json").write_text(json.dumps(timing))
        (HERE / "REPORT.md").write_text(report(results, timing))
        print((HERE / "REPORT.md").read_text())
    elif "extract" in timing:
        (HERE / "timing_extract.json").write_text(json.dumps(timing["extract"]))


if __name__ == "__main__":
    main()
