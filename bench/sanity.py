"""Sanity check on music nobody trained on: the MIT-licensed immich-memories-music tracks.

Usage::

    python bench/sanity.py [--models DIR] [--out docs/SANITY.md]

Classifies every bundled track with the shipped models and tabulates mean valence and arousal
per folder (the track's intended mood). Calm and tender should come out low-arousal,
energetic high-arousal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mer_models.engine import MoodEngine  # noqa: E402
from mer_models.result import MoodResult  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    try:
        from immich_memories_music import tracks_dir
    except ImportError:
        sys.exit("immich-memories-music is not installed (pip install immich-memories-music)")
    engine = MoodEngine(args.models)
    paths = sorted(tracks_dir().glob("*/*.opus"))
    results = engine.classify_many([str(p) for p in paths])
    rows = ["| folder | tracks | mean valence | mean arousal | quadrants (Q1/Q2/Q3/Q4) |",
            "| --- | --- | --- | --- | --- |"]
    detail = ["| track | mood | valence | arousal |", "| --- | --- | --- | --- |"]
    for folder in sorted({p.parent.name for p in paths}):
        chosen = [r for p, r in zip(paths, results, strict=True)
                  if p.parent.name == folder and isinstance(r, MoodResult)]
        counts = [sum(r.quadrant.value == q for r in chosen) for q in ("Q1", "Q2", "Q3", "Q4")]
        rows.append(f"| {folder} | {len(chosen)} | {np.mean([r.valence for r in chosen]):.2f} | "
                    f"{np.mean([r.arousal for r in chosen]):.2f} | "
                    f"{'/'.join(map(str, counts))} |")
    for path, result in zip(paths, results, strict=True):
        if isinstance(result, MoodResult):
            detail.append(f"| {path.parent.name}/{path.name} | {result.mood} | "
                          f"{result.valence:.2f} | {result.arousal:.2f} |")
        else:
            detail.append(f"| {path.parent.name}/{path.name} | error: {result} | | |")
    text = "\n".join([
        "# Sanity check: music nobody trained on",
        "",
        "The MIT-licensed tracks of the PyPI package `immich-memories-music` (folders name the "
        "intended mood; none of them was used in training). Models: "
        f"{engine.versions['cldnn']} + {engine.versions['ensemble']}.",
        "Produced by `python bench/sanity.py --out docs/SANITY.md`.",
        "", *rows, "", "## Per track", "", *detail, ""])
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
