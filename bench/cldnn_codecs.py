#!/usr/bin/env python
"""How much do MP3, Opus and AAC cost the CLDNN, on every held-out fold?

    .venv/bin/python bench/cldnn_codecs.py RUN [RUN ...]

Each RUN folder holds the five fold checkpoints of a CLDNN (``cldnn_fold{k}.pt``, written by
``python -m train cldnn`` or ``python -m train cldnn-import``). For every one of the 720 clips,
the window that ``python -m train cldnn-pack`` re-encoded with each codec of
``train.pipeline.CODECS`` (one seeded random window of five per clip and codec; exact float16
log-mels from .cache/cldnn-codec, not the pack's JPEG copies) is classified by the model of the
fold that held the clip out, and so is the same window of the original clip. Prints window-level
macro-F1 per encoding, the mean over the folds and its spread (markdown table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.cldnn import Cldnn, CldnnConfig
from train.cldnn_pack import codec_windows
from train.cldnn_train import predict_windows
from train.pipeline import CODECS, load_data

PACK = Path(".cache/cldnn-pack/pack.npz")


def fold_models(run: Path) -> dict[int, Cldnn]:
    out = {}
    for k in range(5):
        checkpoint = torch.load(run / f"cldnn_fold{k}.pt", weights_only=True)
        model = Cldnn(CldnnConfig.from_dict(checkpoint["config"]))
        model.load_state_dict(checkpoint["state"])
        out[k] = model.eval()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--pack", type=Path, default=PACK)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = load_data()
    with np.load(args.pack) as pack:
        clip, window, source = pack["clip"], pack["window"], pack["source"]
    inputs = {}
    for s, (name, codec) in enumerate(CODECS.items(), start=1):
        rows = source == s
        assert np.array_equal(clip[rows], np.arange(len(data.clips)))
        chosen = window[rows]
        inputs[name] = codec_windows(data, name, codec, chosen,
                                      Path(".cache/cldnn-codec"), None)
        inputs.setdefault("original", data.features.logmel[np.arange(len(chosen)), chosen])
    names = ["original", *CODECS]
    print("| run | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for run in args.runs:
        models = fold_models(run)
        cells = []
        for name in names:
            scores = []
            for k, model in models.items():
                held = data.folds == k
                p = predict_windows(model, inputs[name][held])
                scores.append(f1_score(data.labels[held], p.argmax(axis=1), average="macro"))
            cells.append(f"{np.mean(scores):.3f} ± {np.std(scores):.3f}")
        print(f"| {run} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
