"""Long fuzzing of decoding and features; tests/test_fuzz.py is the bounded run of the same.

Usage::

    python bench/fuzz.py [--engine auto|atheris|hypothesis] [--target decode|features|all]
                         [--runs N] [--seconds S] [--corpus DIR] [--crashes DIR]

Both engines check the properties of :mod:`tests.test_fuzz`: decoding arbitrary bytes gives
analysable windows or an ``AudioError`` naming the input; features of arbitrary sample arrays
are finite and of the documented shapes, or a ``ParameterError`` exactly when the array is
invalid.

``atheris`` (libFuzzer, coverage-guided over ``mer_models``) runs when it is installed
(``pip install atheris``: a binary wheel, so not a project dependency); it mutates raw bytes,
starting from short WAV, FLAC, Ogg and MP3 files written into ``--corpus`` (where the inputs
it finds interesting stay for the next run); the features target reads the bytes as a sample
array. The first byte of an input picks the target with ``--target all``. Failing inputs are
saved under
``--crashes`` and libFuzzer prints their traceback and, at the end, ``Done N runs in S
second(s)``. Otherwise, or with ``--engine hypothesis``, hypothesis runs ``--runs`` random
examples per target (not derandomised: each run explores new inputs) and prints each
falsifying example. The exit status is 0 when nothing failed.
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _atheris_main(args: argparse.Namespace) -> None:
    import atheris

    with atheris.instrument_imports(include=["mer_models"]):
        import mer_models.audio
        import mer_models.features  # noqa: F401  (instrumented before the tests import them)
    import numpy as np

    from tests.test_fuzz import CONFIG, check_decoding, check_features

    width = CONFIG.window_samples

    def one_input(data: bytes) -> None:
        if len(data) < 2:
            return
        target = args.target if args.target != "all" else ("decode", "features")[data[0] % 2]
        if target == "decode":
            check_decoding(data[1:])
            return
        fdp = atheris.FuzzedDataProvider(data[1:])
        n_windows = fdp.ConsumeIntInRange(1, 2)
        length = width if fdp.ConsumeProbability() < 0.9 else fdp.ConsumeIntInRange(0, 2 * width)
        values = fdp.ConsumeFloatList(min(fdp.remaining_bytes() // 8, 4096)) or [0.0]
        scale = [1.0, 1e-30, 1e6, 1e30][fdp.ConsumeIntInRange(0, 3)]
        samples = np.resize(np.asarray(values, dtype=np.float64) * scale, n_windows * length)
        check_features(samples.reshape(n_windows, length))

    print(f"atheris {importlib.metadata.version('atheris')}: target {args.target}, "
          f"{args.runs} runs or {args.seconds:g} s, corpus {args.corpus}, crashes in "
          f"{args.crashes}", flush=True)
    args.crashes.mkdir(parents=True, exist_ok=True)
    _seed_corpus(args.corpus)
    atheris.Setup([sys.argv[0], f"-runs={args.runs}", f"-max_total_time={int(args.seconds)}",
                   "-max_len=65536", f"-artifact_prefix={args.crashes}/",
                   "-print_final_stats=1", str(args.corpus)], one_input)
    atheris.Fuzz()  # libFuzzer exits the process when done


def _seed_corpus(folder: Path) -> None:
    """Short valid files of each container, prefixed with the byte that picks decoding."""
    import io

    import soundfile as sf

    from tests.synth import SR, mood_clip

    folder.mkdir(parents=True, exist_ok=True)
    clip = mood_clip("Q1", 0.7, seed=5)
    for fmt, subtype in [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", None),
                         ("OGG", "VORBIS"), ("MP3", None)]:
        seed = folder / f"seed-{fmt}-{subtype}".lower()
        if not seed.exists():
            buf = io.BytesIO()
            sf.write(buf, clip, SR, format=fmt, subtype=subtype)
            seed.write_bytes(b"\0" + buf.getvalue())
    (folder / "seed-features").write_bytes(b"\1" + clip[:2048].astype("<f8").tobytes())


def _hypothesis_main(args: argparse.Namespace) -> int:
    from hypothesis import HealthCheck, given, settings
    from numpy.typing import NDArray

    from tests.test_fuzz import audio_bytes, check_decoding, check_features, windows_arrays

    counts: collections.Counter[str] = collections.Counter()
    budget = settings(max_examples=args.runs, deadline=None, database=None,
                      derandomize=False, suppress_health_check=list(HealthCheck))

    @budget
    @given(audio_bytes())
    def decode(data: bytes) -> None:
        counts["decode: decoded" if check_decoding(data) is not None
               else "decode: refused (AudioError)"] += 1

    @budget
    @given(windows_arrays())
    def features(windows: NDArray[Any]) -> None:
        counts["features: computed" if check_features(windows) is not None
               else "features: refused (ParameterError)"] += 1

    targets = {"decode": decode, "features": features}
    chosen = list(targets) if args.target == "all" else [args.target]
    failures = 0
    for name in chosen:
        print(f"hypothesis: {name}, up to {args.runs} examples", flush=True)
        start = time.monotonic()
        try:
            targets[name]()
        except Exception as exc:  # the falsifying example is printed by hypothesis
            failures += 1
            print(f"FAILED {name}: {type(exc).__name__}: {exc}", flush=True)
        print(f"  {time.monotonic() - start:.1f} s", flush=True)
    for outcome, n in sorted(counts.items()):
        print(f"  {outcome}: {n}")
    print("no failure" if not failures else f"{failures} target(s) failed")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the chosen engine."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["auto", "atheris", "hypothesis"], default="auto")
    parser.add_argument("--target", choices=["decode", "features", "all"], default="all")
    parser.add_argument("--runs", type=int, default=2000,
                        help="examples (hypothesis: per target; atheris: in all)")
    parser.add_argument("--seconds", type=float, default=600.0, help="atheris time limit")
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs" / "fuzz-corpus",
                        help="atheris: seed inputs and the inputs it keeps")
    parser.add_argument("--crashes", type=Path, default=ROOT / "runs" / "fuzz-crashes")
    args = parser.parse_args(argv)
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "hypothesis"
        if engine == "hypothesis":
            print("atheris is not installed: hypothesis instead", flush=True)
    if engine == "atheris":
        _atheris_main(args)
    return _hypothesis_main(args)


if __name__ == "__main__":
    sys.exit(main())
