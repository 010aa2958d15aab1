"""Benchmark of the mood engine: latency, batch throughput, ONNX vs torch, memory, cold start.

Usage::

    python bench/classify.py [--clips N] [--models DIR] [--out docs/bench.json]
    python bench/classify.py --clips 1 --cold-start-only 5

Reads 30-second clips from ../shared/data/4q when present (it says so), otherwise writes
synthetic 30-second clips. Prints a table; the numbers go into docs/BENCHMARKS.md by hand,
with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mer_models.engine import MoodEngine  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "4q" / "audio"


def clips(n: int, tmp: Path) -> tuple[list[str], str]:
    """``n`` 30-second MP3 clips: real 4Q clips when present, else synthetic ones."""
    real = sorted(DATA.glob("Q*/*.mp3"))
    if real:
        step = max(1, len(real) // n)
        return [str(p) for p in real[::step][:n]], f"4Q clips from {DATA}"
    sys.path.insert(0, str(ROOT))
    from tests.synth import SR, mood_clip

    paths = []
    for i in range(n):
        path = tmp / f"synthetic{i}.mp3"
        sf.write(path, mood_clip(f"Q{i % 4 + 1}", seconds=30.0, seed=i), SR, format="MP3")
        paths.append(str(path))
    return paths, "synthetic 30 s MP3 clips (../shared/data absent)"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_latency(engine: MoodEngine, paths: list[str]) -> dict[str, float]:
    engine.classify(paths[0])
    totals: list[float] = []
    stages: dict[str, list[float]] = {}  # decode, features, embedding, one per model
    for path in paths:
        result = engine.classify(path)
        totals.append(result.timings_ms["total"])
        for key, ms in result.timings_ms.items():
            if key != "total":
                stages.setdefault(key, []).append(ms)
    out = {"p50_ms": percentile(totals, 50), "p95_ms": percentile(totals, 95)}
    out.update({f"{k}_p50_ms": percentile(v, 50) for k, v in stages.items()})
    return out


def bench_throughput(engine: MoodEngine, paths: list[str], workers: int) -> dict[str, float]:
    engine.classify_many(paths[:workers], workers=workers)  # pool start excluded below
    start = time.perf_counter()
    results = engine.classify_many(paths, workers=workers)
    elapsed = time.perf_counter() - start
    failures = sum(isinstance(r, Exception) for r in results)
    return {"clips": len(paths), "workers": workers, "seconds_incl_pool_start": elapsed,
            "clips_per_s_incl_pool_start": len(paths) / elapsed, "failures": failures}


def bench_steady_throughput(models: Path | None, paths: list[str], workers: int
                            ) -> dict[str, float]:
    """Clips/s of ``workers`` warm processes, pool start-up excluded."""
    from mer_models.config import AnalysisConfig
    from mer_models.pool import EngineSpec, WorkerPool

    spec = EngineSpec(models or MoodEngine().models_dir, AnalysisConfig())
    with WorkerPool(spec, workers) as pool:
        pool.map(paths[: workers * 2])  # warm every worker
        start = time.perf_counter()
        results = pool.map(paths, chunksize=4)
        elapsed = time.perf_counter() - start
    return {"clips": len(paths), "workers": workers, "seconds": elapsed,
            "clips_per_s": len(paths) / elapsed,
            "failures": sum(isinstance(r, Exception) for r in results)}


def bench_onnx_vs_torch(engine: MoodEngine) -> dict[str, float]:
    """The shipped CLDNN architecture, torch eager vs onnxruntime, batch 1 and 32 (1 thread
    each for a fair comparison, and all cores for onnxruntime)."""
    try:
        import torch

        from train.cldnn import Cldnn, CldnnConfig
        from train.export import export_onnx
    except ImportError:
        return {"skipped": 1.0}
    import onnxruntime as ort

    cldnn = engine.model("cldnn")
    assert cldnn is not None
    model = Cldnn(CldnnConfig.from_dict(cldnn.card.architecture)).eval()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        export_onnx(model, path)
        for threads in (1, os.cpu_count() or 1):
            torch.set_num_threads(threads)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for batch in (1, 32):
                x = np.random.default_rng(0).normal(-40, 20, (batch, 128, 216)).astype(np.float32)
                reps = 30 if batch == 1 else 5
                with torch.no_grad():
                    xt = torch.from_numpy(x)
                    model(xt)
                    start = time.perf_counter()
                    for _ in range(reps):
                        model(xt)
                    t_torch = (time.perf_counter() - start) / reps * 1e3
                session.run(None, {"logmel": x})
                start = time.perf_counter()
                for _ in range(reps):
                    session.run(None, {"logmel": x})
                t_onnx = (time.perf_counter() - start) / reps * 1e3
                out[f"torch_b{batch}_t{threads}_ms"] = t_torch
                out[f"onnx_b{batch}_t{threads}_ms"] = t_onnx
                out[f"speedup_b{batch}_t{threads}"] = t_torch / t_onnx
    return out


def bench_cold_start(path: str, models: Path | None, repeats: int = 3) -> dict[str, float]:
    """Median seconds of ``repeats`` fresh `mer classify` processes (each with a new database,
    then the same file again: answered from the database), and for engine construction +
    first clip in a new interpreter."""
    mer = Path(sys.executable).with_name("mer")
    args = [str(mer), "classify", path, "--json"] + (["--models", str(models)] if models else [])
    fresh: list[float] = []
    cached: list[float] = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as data:
            env = {**os.environ, "MER_DATA_DIR": data, "MER_WORKERS": "1"}
            for times in (fresh, cached):
                start = time.perf_counter()
                subprocess.run(args, check=True, capture_output=True, env=env)
                times.append(time.perf_counter() - start)
    cli, cli_cached = percentile(fresh, 50), percentile(cached, 50)
    code = ("import time; t=time.perf_counter(); from mer_models.engine import MoodEngine; "
            f"e=MoodEngine({str(models)!r} if {bool(models)} else None); e.classify({path!r}); "
            "print(time.perf_counter()-t)")
    # Not from ROOT: the installed package (or PYTHONPATH, to time another worktree) decides.
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=tempfile.gettempdir())
    return {"cli_process_s": cli, "cli_process_cached_s": cli_cached,
            "cli_process_min_s": min(fresh), "cli_process_max_s": max(fresh),
            "engine_first_clip_s": float(out.stdout.strip())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cold-start-only", type=int, default=0, metavar="N",
                        help="only the cold start, N fresh processes (compare commits by "
                             "running it with PYTHONPATH set to another worktree)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths, origin = clips(args.clips, Path(tmp))
        if args.cold_start_only:
            cold = bench_cold_start(paths[0], args.models, repeats=args.cold_start_only)
            print(json.dumps({"clips": origin, "cold_start": cold}, indent=2))
            return
        engine = MoodEngine(args.models, threads=1)
        engine.warm_up()
        report = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                       f"Python {platform.python_version()}",
            "clips": origin,
            "models": engine.versions,
            "latency_1_thread": bench_latency(engine, paths),
            # The in-process default (threads=0: onnxruntime on every core), what a one-file
            # `mer classify` and a single-process service use.
            "latency_all_threads": bench_latency(MoodEngine(args.models, threads=0),
                                                 paths[: max(1, len(paths) // 3)]),
            "throughput_all_cores": bench_steady_throughput(args.models, paths,
                                                            os.cpu_count() or 1),
            "throughput_classify_many": bench_throughput(engine, paths, os.cpu_count() or 1),
            "onnx_vs_torch": bench_onnx_vs_torch(engine),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cold_start": bench_cold_start(paths[0], args.models),
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
