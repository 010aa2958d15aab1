#!/usr/bin/env python
"""How much do MP3, Opus and AAC cost the CLDNN, on every held-out fold?

    .venv/bin/python bench/cldnn_codecs.py RUN [RUN ...]

Each RUN folder holds the five fold checkpoints of a CLDNN (``cldnn_fold{k}.pt``, written by
``python -m train cldnn`` or ``python -m train cldnn-import``). For every one of the 720 clips,
the window that ``python -m train cldnn-pack`` re-encoded with each codec of
``train.pipeline.CODECS`` (one seeded random window of five per clip and codec; exact float16
log-mels from .cache/cldnn-codec, not the pack's JPEG copies) is classified by the model of the
fold that held the clip out, and so is the same window of the original clip (each codec chose
its own windows). Prints, per codec, window-level macro-F1 (mean over the folds) on those
original windows, on their re-encoded copies, and the difference (markdown table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.cldnn import Cldnn
from train.cldnn_pack import codec_windows
from train.cldnn_train import predict_windows, window_f1
from train.pipeline import CODECS, load_data

PACK = Path(".cache/cldnn-pack/pack.npz")


def fold_models(run: Path) -> dict[int, Cldnn]:
    return {k: Cldnn.from_checkpoint(torch.load(run / f"cldnn_fold{k}.pt", weights_only=True))
            for k in range(5)}


def out_of_fold_f1(models: dict[int, Cldnn], windows: np.ndarray, labels: np.ndarray,
                   folds: np.ndarray) -> list[float]:
    """Window-level macro-F1 of each fold's model on the clips it held out."""
    return [window_f1(predict_windows(model, windows[folds == k]), labels[folds == k])
            for k, model in models.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--pack", type=Path, default=PACK)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = load_data()
    with np.load(args.pack) as pack:
        clip, window, source = pack["clip"], pack["window"], pack["source"]
    # Each codec re-encoded its own random window of each clip: compare it with that window.
    pairs = {}
    for s, (name, codec) in enumerate(CODECS.items(), start=1):
        rows = source == s
        assert np.array_equal(clip[rows], np.arange(len(data.clips)))
        chosen = window[rows]
        original = data.features.logmel[np.arange(len(chosen)), chosen]
        pairs[name] = (original, codec_windows(data, name, codec, chosen,
                                               Path(".cache/cldnn-codec"), None))
    print("| run | " + " | ".join(f"{name}: original -> re-encoded" for name in pairs) + " |")
    print("|---" * (len(pairs) + 1) + "|")
    for run in args.runs:
        models = fold_models(run)
        cells = []
        for original, encoded in pairs.values():
            before = out_of_fold_f1(models, original, data.labels, data.folds)
            after = out_of_fold_f1(models, encoded, data.labels, data.folds)
            cells.append(f"{np.mean(before):.3f} -> {np.mean(after):.3f} "
                         f"({np.mean(after) - np.mean(before):+.3f})")
        print(f"| {run} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
