"""What the musicnn embedding costs per clip, for each layout the third model could use.

Usage::

    python bench/musicnn.py [--clips N] [--out /tmp/musicnn-bench.json]

For 1, 2 and 3 patches per window (3 windows per clip), MSD alone and MSD+MTT, it times the
front end and the networks on one onnxruntime thread (median ms per 30 s clip), then times
MSD at 3 patches under each onnxruntime graph-optimisation level and after dynamic int8
quantisation (with the relative error that causes on the penultimate layer). Macro-F1 of
each layout comes from ``runs/musicnn/metrics.json`` (``python -m train.musicnn_embed``) and
the nested fusion with the other models from ``runs/*/metrics_fused.json`` when present; the
table goes into docs/BENCHMARKS.md by hand, with the machine it was measured on.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.classify import clips  # noqa: E402
from mer_models.audio import load_windows  # noqa: E402
from mer_models.config import AnalysisConfig  # noqa: E402
from mer_models.musicnn import OnnxMusicnn, musicnn_patches  # noqa: E402

WEIGHTS = ROOT / "mer_models" / "weights"
LAYOUTS = [("msd", 1), ("msd", 2), ("msd", 3), ("msd+mtt", 1), ("msd+mtt", 2)]


def _session(path: Path, level: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def layouts(windows: list[np.ndarray], sample_rate: int) -> dict[str, dict[str, float]]:
    """Median ms per clip of the front end and the networks, per layout, 1 thread."""
    nets = {k: OnnxMusicnn(WEIGHTS / f"musicnn-{k}-1.json", threads=1, prefer_gpu=False)
            for k in ("msd", "mtt")}
    out = {}
    for feature_set, patches_per_window in LAYOUTS:
        front, networks = [], []
        for w in windows:
            start = time.perf_counter()
            patches = musicnn_patches(w, sample_rate=sample_rate,
                                      patches_per_window=patches_per_window).patches
            front.append(time.perf_counter() - start)
            start = time.perf_counter()
            for key in feature_set.split("+"):
                nets[key].penultimate(patches)
            networks.append(time.perf_counter() - start)
        name = f"{feature_set}-w3p{patches_per_window}"
        out[name] = {"front_end_ms": round(1e3 * float(np.median(front)), 1),
                     "networks_ms": round(1e3 * float(np.median(networks)), 1)}
        out[name]["total_ms"] = round(out[name]["front_end_ms"] + out[name]["networks_ms"], 1)
        print(f"{name:16s} {out[name]}")
    return out


def optimisations(windows: list[np.ndarray], sample_rate: int) -> dict[str, dict[str, float]]:
    """MSD at 3 patches per window: graph-optimisation levels and dynamic int8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = WEIGHTS / "musicnn-msd-1.onnx"
    batches = [musicnn_patches(w, sample_rate=sample_rate, patches_per_window=3).patches
               for w in windows]
    results: dict[str, dict[str, float]] = {}
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        int8 = Path(tmp) / "msd-int8.onnx"
        quantize_dynamic(str(source), str(int8), weight_type=QuantType.QInt8)
        variants = [(f"fp32 {level}", source, level) for level in
                    ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED",
                     "ORT_ENABLE_ALL")] + [("int8 dynamic ORT_ENABLE_ALL", int8,
                                            "ORT_ENABLE_ALL")]
        for name, path, level in variants:
            session = _session(path, level)
            inp, out = session.get_inputs()[0].name, session.get_outputs()[0].name
            values, times = [], []
            for batch in batches:
                start = time.perf_counter()
                values.append(session.run([out], {inp: batch})[0])
                times.append(time.perf_counter() - start)
            ms = 1e3 * float(np.median(times))
            stacked = np.concatenate(values)
            if reference is None:
                reference = stacked
            error = float(np.abs(stacked - reference).mean() / np.abs(reference).mean())
            results[name] = {"ms_per_clip": round(ms, 1), "relative_error": error}
            print(f"{name:30s} {ms:7.1f} ms/clip  relative error {error:.2e}")
    return results


def accuracy() -> dict[str, Any]:
    """Macro-F1 of each layout's head and fusions, from the training runs when present."""
    found: dict[str, Any] = {}
    metrics = ROOT / "runs" / "musicnn" / "metrics.json"
    if metrics.is_file():
        for name, m in json.loads(metrics.read_text()).items():
            found[name] = {"macro_f1": round(m["macro_f1_mean"], 3)}
    for fused in sorted((ROOT / "runs").glob("*/metrics_fused.json")):
        m = json.loads(fused.read_text())
        found[f"fused {fused.parent.name}"] = {
            "kinds": m.get("kinds"), "macro_f1": round(m["macro_f1_mean"], 3),
            "subsets": {k: v["macro_f1_mean"] for k, v in m.get("subsets", {}).items()}}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    config = AnalysisConfig()
    with tempfile.TemporaryDirectory() as tmp:
        paths, origin = clips(args.clips, Path(tmp))
        windows = [load_windows(p, config).windows for p in paths]
    print(f"{len(paths)} clips: {origin}")
    # Warm-up: librosa's first mel filterbank and each session's first run.
    musicnn_patches(windows[0], sample_rate=config.sample_rate)
    report = {"clips": len(paths), "origin": origin,
              "layouts": layouts(windows, config.sample_rate),
              "optimisations": optimisations(windows, config.sample_rate),
              "accuracy": accuracy()}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
