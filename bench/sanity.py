"""Sanity check on music nobody trained on: the MIT-licensed immich-memories-music tracks.

Usage::

    python bench/sanity.py [--models DIR] [--out docs/SANITY.md]

Classifies every bundled track with the shipped models, fused and each model alone, and
tabulates mean valence and arousal per folder (the track's intended mood), the mean arousal
of the energetic and calm folders, and the rank AUC of arousal for energetic against calm and
tender tracks. The folder names are prompts, weak labels: a sanity check, not a target.
With ``--out``, the tables replace the part of the file between the generated-section
markers; the prose around them is kept.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mer_models.card import ModelCard  # noqa: E402
from mer_models.engine import DEFAULT_MODELS_DIR, MoodEngine  # noqa: E402
from mer_models.result import MoodResult  # noqa: E402

BEGIN, END = "<!-- generated:begin -->", "<!-- generated:end -->"


def single_model_dirs(models: Path, tmp: Path) -> dict[str, Path]:
    """One folder per fused model holding only it (and the networks a musicnn head needs)."""
    engine = MoodEngine(models, threads=1, prefer_gpu=False)
    folders = {}
    for model in engine.models:
        folder = tmp / model.card.kind
        folder.mkdir()
        card_path = models / f"{model.card.display_name}.json"
        needed = [card_path]
        for network in model.card.architecture.get("embedding", {}).get("networks", []):
            needed.append(models / f"{network}.json")
        for card in needed:
            shutil.copy2(card, folder / card.name)
            artifact = ModelCard.load(card).artifact_path(card)
            shutil.copy2(artifact, folder / artifact.name)
        folders[model.card.kind] = folder
    return folders


def auc(positive: list[float], negative: list[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    from sklearn.metrics import roc_auc_score

    labels = [1] * len(positive) + [0] * len(negative)
    return float(roc_auc_score(labels, positive + negative))


def arousal_check(by_model: dict[str, list[MoodResult | Exception]], folders: list[str]
                  ) -> list[str]:
    """Energetic vs calm (and tender): mean arousal and rank AUC, per model."""
    rows = ["| model | mean arousal, energetic | mean arousal, calm | AUC energetic vs "
            "calm+tender |", "| --- | --- | --- | --- |"]
    for name, results in by_model.items():
        arousal = {f: [r.arousal for r, g in zip(results, folders, strict=True)
                       if g == f and isinstance(r, MoodResult)] for f in set(folders)}
        rows.append(f"| {name} | {np.mean(arousal['energetic']):.2f} | "
                    f"{np.mean(arousal['calm']):.2f} | "
                    f"{auc(arousal['energetic'], arousal['calm'] + arousal['tender']):.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    try:
        from immich_memories_music import tracks_dir
    except ImportError:
        sys.exit("immich-memories-music is not installed (pip install immich-memories-music)")
    paths = sorted(tracks_dir().glob("*/*.opus"))
    folders = [p.parent.name for p in paths]
    engine = MoodEngine(args.models)
    results = engine.classify_many([str(p) for p in paths])
    by_model: dict[str, list[MoodResult | Exception]] = {"fused": results}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, folder in single_model_dirs(args.models, Path(tmp)).items():
            by_model[f"{kind} alone"] = MoodEngine(folder).classify_many(
                [str(p) for p in paths])
    rows = ["| folder | tracks | mean valence | mean arousal | quadrants (Q1/Q2/Q3/Q4) |",
            "| --- | --- | --- | --- | --- |"]
    for folder in sorted(set(folders)):
        chosen = [r for r, f in zip(results, folders, strict=True)
                  if f == folder and isinstance(r, MoodResult)]
        counts = [sum(r.quadrant.value == q for r in chosen) for q in ("Q1", "Q2", "Q3", "Q4")]
        rows.append(f"| {folder} | {len(chosen)} | {np.mean([r.valence for r in chosen]):.2f} | "
                    f"{np.mean([r.arousal for r in chosen]):.2f} | "
                    f"{'/'.join(map(str, counts))} |")
    detail = ["| track | mood | valence | arousal |", "| --- | --- | --- | --- |"]
    for path, result in zip(paths, results, strict=True):
        if isinstance(result, MoodResult):
            detail.append(f"| {path.parent.name}/{path.name} | {result.mood} | "
                          f"{result.valence:.2f} | {result.arousal:.2f} |")
        else:
            detail.append(f"| {path.parent.name}/{path.name} | error: {result} | | |")
    generated = "\n".join([
        f"Models: {' + '.join(engine.versions.values())}. Produced by "
        "`python bench/sanity.py --out docs/SANITY.md`.", "", *rows, "",
        "### Arousal: energetic against calm", "", *arousal_check(by_model, folders), "",
        "### Per track (fused)", "", *detail])
    print(generated)
    if args.out:
        text = args.out.read_text() if args.out.is_file() else ""
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            text = f"{head}{BEGIN}\n{generated}\n{END}{rest.split(END, 1)[1]}"
        else:
            text = f"# Sanity check: music nobody trained on\n\n{BEGIN}\n{generated}\n{END}\n"
        args.out.write_text(text)


if __name__ == "__main__":
    main()
