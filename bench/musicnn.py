"""What the musicnn embedding costs per clip and what it buys, for each layout the third
model could use (issue 8, item 6).

Usage::

    .venv/bin/python bench/musicnn.py [--clips 20] [--skip-speed] [--skip-accuracy]

**Accuracy** (no audio work; reads what the training commands left):

- each layout's head, out-of-fold over the 5 artist-disjoint folds of ``splits.csv``
  (``runs/musicnn/oof-<layout>.npy``, written by ``python -m train.musicnn_embed --stage all``;
  the regularisation is chosen inside the training folds);
- the same head fused with the CLDNN's and the ensemble's out-of-fold probabilities of
  ``runs/r3-noaug`` by the rule of the documented figures (weighted mean, weights chosen on
  the other four folds: :func:`train.pipeline.nested_fusion` with ``bags=0``, the single best
  grid point, as shipped until the bagged choice);
- for the MSD W3 P1 layout (shipped first) and the best fused one: the head alone on 3 other
  artist-disjoint, quadrant-stratified 5-fold partitions, and a paired bootstrap of the fused
  gain (clips resampled within each fold), because the best of many layouts scored on the same
  folds is optimistic.

**Speed** (one onnxruntime thread, spinning off, as served; the layouts run in turn on every
clip so that the shared machine's drift hits them alike): milliseconds per 30 s clip of
decoding the windows, musicnn's front end and the networks; then, for the MSD W3 P1 layout,
onnxruntime's graph optimisation levels and static int8 quantisation of the MSD network
(QDQ, per channel, calibrated on 64 patches; all convolutions, or the two timbral ones only)
and dynamic int8. The tables go into docs/BENCHMARKS.md by hand, with the machine and the day.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mer_models.audio import load_windows  # noqa: E402
from mer_models.config import AnalysisConfig  # noqa: E402
from mer_models.musicnn import OnnxMusicnn, musicnn_patches  # noqa: E402
from mer_models.onnx import session_options  # noqa: E402
from train.data import DEFAULT_DATA_ROOT, QUADRANT_NAMES  # noqa: E402
from train.metrics import per_fold  # noqa: E402
from train.musicnn_embed import read_splits  # noqa: E402
from train.pipeline import best_weights, nested_fusion  # noqa: E402

WEIGHTS = ROOT / "mer_models" / "weights"
#: The layout the others are compared with (shipped until the MSD+MTT W5 P2 head).
SHIPPED = "msd-logreg-w3p1"
#: (feature set, windows, patches per window): network runs per clip = nets * windows * patches.
LAYOUTS = [("msd", 3, 1), ("msd", 3, 2), ("msd", 3, 3), ("msd", 5, 2), ("msd", 5, 3),
           ("msd+mtt", 3, 1), ("msd+mtt", 3, 2), ("msd+mtt", 5, 1), ("msd+mtt", 5, 2),
           ("msd+mtt", 5, 3)]


def layout_name(features: str, windows: int, patches: int, head: str = "logreg") -> str:
    return f"{features}-{head}-w{windows}p{patches}"


def accuracy(data: Path, heads: Path, base: Path, say: Callable[[str], None]) -> None:
    rows = read_splits(data)
    y = np.array([QUADRANT_NAMES.index(r["quadrant"]) for r in rows])
    folds = np.array([int(r["fold"]) for r in rows])
    others = [np.load(base / f"oof_{k}.npy") for k in ("cldnn", "ensemble")]
    say("| layout (networks, windows W, patches per window P) | network runs per clip | "
        "head macro-F1 | fused macro-F1 | fused valence | fused arousal | weights "
        "CLDNN / ensemble / head (all folds) |")
    say("|---|---|---|---|---|---|---|")
    fused: dict[str, np.ndarray] = {}
    scores: dict[str, float] = {}
    for features, w, p in LAYOUTS:
        name = layout_name(features, w, p)
        path = heads / f"oof-{name}.npy"
        if not path.is_file():
            say(f"| {name} | missing: run `python -m train.musicnn_embed --stage all` | | | | | |")
            continue
        head = np.load(path)
        fused[name], _ = nested_fusion([*others, head], y, folds, bags=0)
        weights = best_weights([*others, head], y, bags=0)
        h, f = per_fold(y, head, folds), per_fold(y, fused[name], folds)
        scores[name] = f["macro_f1_mean"]
        runs = len(features.split("+")) * w * p
        mark = " (shipped first)" if name == SHIPPED else ""
        say(f"| {name}{mark} | {runs} | {h['macro_f1_mean']:.3f} ± {h['macro_f1_std']:.3f} | "
            f"{f['macro_f1_mean']:.3f} ± {f['macro_f1_std']:.3f} | "
            f"{f['valence_accuracy_mean']:.3f} | {f['arousal_accuracy_mean']:.3f} | "
            f"{' / '.join(f'{v:.2f}' for v in weights)} |")
    if SHIPPED not in fused or len(fused) < 2:
        return
    best = max((n for n in scores if n != SHIPPED), key=scores.__getitem__)
    say(f"\nBest fused layout: {best}. Checks of its gain over {SHIPPED}:\n")
    bootstrap(y, folds, fused[SHIPPED], fused[best], say)
    resplits(data, rows, y, [SHIPPED, best], say)


def bootstrap(y: np.ndarray, folds: np.ndarray, ref: np.ndarray, new: np.ndarray,
              say: Callable[[str], None], n: int = 2000) -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    index = {k: np.flatnonzero(folds == k) for k in np.unique(folds)}
    a, b = new.argmax(1), ref.argmax(1)
    gains = []
    for _ in range(n):
        draw = {k: rng.choice(v, len(v)) for k, v in index.items()}
        gains.append(np.mean([f1_score(y[d], a[d], average="macro")
                              - f1_score(y[d], b[d], average="macro") for d in draw.values()]))
    g = np.asarray(gains)
    say(f"- paired bootstrap of the fused gain ({n} draws, clips resampled within each fold): "
        f"95 % interval [{np.percentile(g, 2.5):+.3f}, {np.percentile(g, 97.5):+.3f}], "
        f"P(gain <= 0) = {np.mean(g <= 0):.2f}")


def resplits(data: Path, rows: list[dict[str, str]], y: np.ndarray, names: list[str],
             say: Callable[[str], None]) -> None:
    """Head alone on 3 other artist-disjoint partitions (the other models' OOFs exist only
    for the official folds, so no fusion here)."""
    from sklearn.model_selection import StratifiedGroupKFold

    from train.musicnn_embed import clip_embeddings, cross_validate, extract

    with (data / "4q" / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        artist = {r["Song"]: r["Artist"] for r in csv.DictReader(handle)}
    groups = np.array([artist[r["song_id"]] for r in rows])
    cache = extract(data)
    line = []
    for name in names:
        features, _, layout = name.split("-")
        w, p = int(layout[1]), int(layout[3])
        x = np.concatenate([clip_embeddings(cache[k], w, p) for k in features.split("+")], 1)
        values = []
        for seed in (1, 2, 3):
            alt = np.zeros(len(y), dtype=int)
            splitter = StratifiedGroupKFold(5, shuffle=True, random_state=seed)
            for i, (_, test) in enumerate(splitter.split(x, y, groups)):
                alt[test] = i
            oof, _ = cross_validate(x, y, alt, "logreg")
            values.append(per_fold(y, oof, alt)["macro_f1_mean"])
        line.append(f"{name}: {' / '.join(f'{v:.3f}' for v in values)} (mean "
                    f"{np.mean(values):.3f})")
    say("- head alone on 3 other artist-disjoint partitions (seeds 1 / 2 / 3): "
        + "; ".join(line))


def speed(data: Path, n_clips: int, say: Callable[[str], None]) -> None:
    rows = read_splits(data)
    paths = [r["path"] for r in rows[:: max(1, len(rows) // n_clips)][:n_clips]]
    nets = {k: OnnxMusicnn(WEIGHTS / f"musicnn-{k}-1.json", threads=1, prefer_gpu=False)
            for k in ("msd", "mtt")}
    configs = {w: AnalysisConfig().with_windows(w) for w in (3, 5)}

    def run(features: str, w: int, p: int, path: str) -> float:
        start = time.perf_counter()
        windows = load_windows(path, configs[w]).windows
        patches = musicnn_patches(windows, sample_rate=configs[w].sample_rate,
                                  patches_per_window=p).patches
        for key in features.split("+"):
            nets[key].embed(patches)
        return 1e3 * (time.perf_counter() - start)

    for layout in LAYOUTS:  # warm-up: lazy imports, first runs
        run(*layout, paths[0])
    times: dict[tuple[str, int, int], list[float]] = {layout: [] for layout in LAYOUTS}
    for i, path in enumerate(paths):
        order = LAYOUTS[i % len(LAYOUTS):] + LAYOUTS[: i % len(LAYOUTS)]
        for layout in order:
            times[layout].append(run(*layout, path))
    say(f"| layout | ms per clip: decode + front end + networks, p50 (p95), {len(paths)} clips |")
    say("|---|---|")
    for layout, values in times.items():
        say(f"| {layout_name(*layout)} | {np.median(values):.0f} "
            f"({np.percentile(values, 95):.0f}) |")
    onnx_variants(paths, say)


def onnx_variants(paths: list[str], say: Callable[[str], None]) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    config = AnalysisConfig()
    batches = [musicnn_patches(load_windows(p, config).windows).patches for p in paths]
    source = WEIGHTS / "musicnn-msd-1.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        variants: dict[str, tuple[Path, Any]] = {
            f"fp32, {level.name}": (source, level) for level in (
                ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                ort.GraphOptimizationLevel.ORT_ENABLE_ALL)}
        calibration = np.concatenate(batches)[:64]
        for label, nodes in (("int8 static, every convolution", None),
                             ("int8 static, the 2 timbral convolutions", ["Conv_20", "Conv_25"])):
            variants[label] = (quantize(source, Path(tmp), calibration, nodes),
                               ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        dynamic = Path(tmp) / "int8-dynamic.onnx"
        quantize_dynamic(str(source), str(dynamic), weight_type=QuantType.QInt8)
        variants["int8 dynamic"] = (dynamic, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        sessions = {}
        for label, (path, level) in variants.items():
            options = session_options(1)
            options.graph_optimization_level = level
            sessions[label] = ort.InferenceSession(str(path), options,
                                                   providers=["CPUExecutionProvider"])
        reference = {label: s.run(["penultimate"], {"melspec": batches[0]})[0]
                     for label, s in sessions.items()}
        times: dict[str, list[float]] = {label: [] for label in sessions}
        for i, batch in enumerate(batches * 2):
            labels = list(sessions)
            for label in labels[i % len(labels):] + labels[: i % len(labels)]:
                start = time.perf_counter()
                sessions[label].run(["penultimate"], {"melspec": batch})
                times[label].append(1e3 * (time.perf_counter() - start))
    base = reference["fp32, ORT_ENABLE_ALL"]
    say("\n| MSD network, 3 patches (W3 P1), 1 thread | ms p50 | "
        "max abs. difference of the penultimate layer from fp32 |")
    say("|---|---|---|")
    for label, values in times.items():
        say(f"| {label} | {np.median(values):.1f} | "
            f"{np.abs(reference[label] - base).max():.2g} |")


def int8_accuracy(data: Path, base: Path, say: Callable[[str], None]) -> None:
    """Fused macro-F1 of the MSD W3 P1 layout with static int8 MSD networks.

    Every clip is embedded again (3 windows, 1 patch each) by the fp32 network and by the two
    static int8 variants; each embedding goes through the head's nested CV
    (:func:`train.musicnn_embed.cross_validate`) and the shipped fusion rule. The fp32 row
    must reproduce the MSD W3 P1 head's 0.724 / 0.752 (docs/MODEL_REPORT.md).
    """
    import onnxruntime as ort

    from mer_models.musicnn import pool_embedding
    from train.musicnn_embed import cross_validate

    rows = read_splits(data)
    y = np.array([QUADRANT_NAMES.index(r["quadrant"]) for r in rows])
    folds = np.array([int(r["fold"]) for r in rows])
    others = [np.load(base / f"oof_{k}.npy") for k in ("cldnn", "ensemble")]
    config = AnalysisConfig()
    patches = [musicnn_patches(load_windows(r["path"], config).windows).patches for r in rows]
    source = WEIGHTS / "musicnn-msd-1.onnx"
    say("| MSD network, W3 P1 | head macro-F1 | fused macro-F1 | fused valence | "
        "fused arousal |")
    say("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        calibration = np.concatenate(patches[:: len(patches) // 22])[:64]
        variants = {"fp32": source,
                    "int8 static, every convolution": quantize(source, Path(tmp), calibration,
                                                               None),
                    "int8 static, the 2 timbral convolutions": quantize(
                        source, Path(tmp), calibration, ["Conv_20", "Conv_25"])}
        for label, path in variants.items():
            session = ort.InferenceSession(str(path), session_options(0),
                                           providers=["CPUExecutionProvider"])
            x = np.stack([pool_embedding(session.run(["penultimate"], {"melspec": p})[0])
                          for p in patches])
            head, _ = cross_validate(x, y, folds, "logreg")
            fused, _ = nested_fusion([*others, head], y, folds, bags=0)
            h, f = per_fold(y, head, folds), per_fold(y, fused, folds)
            say(f"| {label} | {h['macro_f1_mean']:.4f} | {f['macro_f1_mean']:.4f} | "
                f"{f['valence_accuracy_mean']:.3f} | {f['arousal_accuracy_mean']:.3f} |")


def quantize(source: Path, folder: Path, calibration: np.ndarray,
             nodes: list[str] | None) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"melspec": calibration[i : i + 8]}
                                 for i in range(0, len(calibration), 8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    prepared = folder / "prepared.onnx"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    out = folder / f"int8-{'-'.join(nodes or ['all'])}.onnx"
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, nodes_to_quantize=nodes)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--heads", type=Path, default=ROOT / "runs" / "musicnn",
                        help="out-of-fold probabilities of every layout's head")
    parser.add_argument("--base", type=Path, default=ROOT / "runs" / "r3-noaug",
                        help="the CLDNN's and the ensemble's out-of-fold probabilities")
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--int8-accuracy", action="store_true",
                        help="also re-embed every clip with static int8 networks and score "
                             "the fusion (about 5 CPU minutes)")
    args = parser.parse_args()

    def say(text: str) -> None:
        print(text, flush=True)

    if not args.skip_accuracy:
        accuracy(args.data, args.heads, args.base, say)
    if not args.skip_speed:
        say("")
        speed(args.data, args.clips, say)
    if args.int8_accuracy:
        say("")
        int8_accuracy(args.data, args.base, say)


if __name__ == "__main__":
    main()
