"""Measured quality of the recommender (bot.recommend) on the 4Q dataset.

Usage::

    .venv/bin/python bench/recommend.py [--seeds 10] [--no-write]

The "stored moods" are out-of-fold predictions: every clip was predicted by a model that did
not see its fold: the shipped three-model fusion (``--fused``, default runs/r4/oof_fused.npy,
from ``python -m train fuse --run runs/r4``) when present, then
runs/musicnn/oof-msd+mtt-logreg-w3p1.csv and runs/ens/oof_ensemble.npy when present; the
truth is the dataset's quadrant. The "like" embedding is what the service stores with each
prediction: the musicnn clip embedding of the shipped head (``--embedding shipped``, the
layout its card names: MSD+MTT, 5 windows, 2 patches each, mean+std: 800 values), or MSD /
MSD+MTT on the 3 serving windows with one centred patch (``msd``: 400 values, the first
head's; ``msd+mtt``: 800), read from the cache of train/musicnn_embed.py. Prints the tables
and writes them into docs/RECOMMENDER.md between the bench markers.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.recommend import CENTRES, Candidate, journey, recommend  # noqa: E402
from bot.recommend.journey import Path as MoodPath  # noqa: E402
from bot.recommend.values import ranking  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "4q"
FUSED_OOF = ROOT / "runs" / "r4" / "oof_fused.npy"
MUSICNN_OOF = ROOT / "runs" / "musicnn" / "oof-msd+mtt-logreg-w3p1.csv"
ENSEMBLE_OOF = ROOT / "runs" / "ens" / "oof_ensemble.npy"
CACHE = ROOT / ".cache" / "musicnn"
DOC = ROOT / "docs" / "RECOMMENDER.md"
MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")
QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
#: Serving windows 0, 2, 4 of the 5 cached, centre patch (1) of 3 per window: the w3p1 setting.
PATCHES = [w * 3 + 1 for w in (0, 2, 4)]
PAIRS = [("Q3", "Q1"), ("Q1", "Q3"), ("Q4", "Q2"), ("Q2", "Q4"), ("Q3", "Q2"), ("Q4", "Q1"),
         ("Q1", "Q2"), ("Q2", "Q3")]  # sad->happy, happy->sad, calm->tense, tense->calm, ...
STEPS = (5, 8, 12)


def load() -> tuple[list[dict[str, str]], dict[str, set[str]]]:
    """Rows of splits.csv (song_id, quadrant, artist, fold, title) and each song's genres."""
    with (DATA / "splits.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with (DATA / "metadata.csv").open(newline="", encoding="utf-8") as f:
        meta = {r["Song"]: r for r in csv.DictReader(f)}
    genres = {s: {g.strip() for g in m["GenresStr"].split(";") if g.strip()}
              for s, m in meta.items()}
    for r in rows:
        r["title"] = meta[r["song_id"]]["Title"]
    return rows, genres


def predictions(rows: list[dict[str, str]], fused: Path = FUSED_OOF) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities (720, 4) in splits.csv order, by name."""
    out: dict[str, np.ndarray] = {}
    if fused.is_file():
        out["shipped fusion (CLDNN + ensemble + musicnn head)"] = np.load(fused)
    if MUSICNN_OOF.is_file():
        with MUSICNN_OOF.open(newline="", encoding="utf-8") as f:
            by_id = {r["song_id"]: [float(r[q]) for q in QUADRANTS] for r in csv.DictReader(f)}
        out["musicnn MSD+MTT logreg (w3p1)"] = np.array([by_id[r["song_id"]] for r in rows])
    if ENSEMBLE_OOF.is_file():
        out["descriptor ensemble"] = np.load(ENSEMBLE_OOF)
    return out


def embeddings(rows: list[dict[str, str]], kind: str = "shipped") -> np.ndarray | None:
    """Clip embeddings (720, 400 per network) in splits.csv order, or None without the cache.

    ``kind`` "shipped" pools the layout of the shipped head's card, "msd" or "msd+mtt" the
    centred patch of the 3 serving windows.
    """
    from mer_models.card import ModelCard, find_cards
    from mer_models.engine import DEFAULT_MODELS_DIR
    from train.musicnn_head import layout_embeddings

    for path in sorted(CACHE.glob("4q-*.npz")):
        with np.load(path) as loaded:
            if list(loaded["song_ids"]) != [r["song_id"] for r in rows]:
                continue
            cache = dict(loaded)
        if kind == "shipped":
            card = ModelCard.load(find_cards(DEFAULT_MODELS_DIR)["musicnn"])
            return layout_embeddings(cache, card.architecture["embedding"], 3)
        parts = [cache[k][:, PATCHES, :] for k in kind.split("+")]
        return np.concatenate([np.concatenate([p.mean(axis=1), p.std(axis=1)], axis=1)
                               for p in parts], axis=1)
    return None


def candidates(rows: list[dict[str, str]], proba: np.ndarray, emb: np.ndarray | None
               ) -> list[Candidate]:
    """What the service would store for each clip: predicted mood, never the truth."""
    out = []
    for i, r in enumerate(rows):
        p = proba[i]
        out.append(Candidate(i, r["title"], r["artist"], QUADRANTS[int(np.argmax(p))],
                             float(np.clip(p[0] + p[3], 0, 1)), float(np.clip(p[0] + p[1], 0, 1)),
                             float(p.max()), None if emb is None else tuple(map(float, emb[i]))))
    return out


def genre_scores(rows: list[dict[str, str]], genres: dict[str, set[str]]) -> np.ndarray:
    """P(quadrant | genres) of each clip, estimated on the other folds (n, 4)."""
    out = np.zeros((len(rows), 4))
    folds = np.array([int(r["fold"]) for r in rows])
    for fold in np.unique(folds):
        counts: dict[str, Counter[str]] = {}
        for r in (r for r, f in zip(rows, folds, strict=True) if f != fold):
            for g in genres[r["song_id"]]:
                counts.setdefault(g, Counter())[r["quadrant"]] += 1
        for i in np.flatnonzero(folds == fold):
            gs = [counts[g] for g in genres[rows[i]["song_id"]] if g in counts] or [Counter()]
            out[i] = np.mean([[(c[q] + 1) / (sum(c.values()) + 4) for q in QUADRANTS]
                              for c in gs], axis=0)
    return out


def capped(order: np.ndarray, artists: list[str], n: int,
           banned: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """First ``n`` of ``order`` with one track per artist (the recommender's cap)."""
    seen, out = set(), []
    for i in order:
        if i in banned or artists[i] in seen:
            continue
        seen.add(artists[i])
        out.append(int(i))
        if len(out) == n:
            break
    return out


def quadrant_table(lib: list[Candidate], truth: list[str], gscore: np.ndarray, seeds: int,
                   folds: np.ndarray) -> list[list[str]]:
    """precision@10 per quadrant: full library (lists 1 and 1-5) and fold-sized libraries."""
    artists = [c.artist for c in lib]
    rows = []
    for q in QUADRANTS:
        first, deep, small, rand, genre, centre = [], [], [], [], [], []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            banned: set[int] = set()
            for depth in range(5):
                got = [s.candidate.track_id for s in
                       recommend(lib, q, 10, exclude=banned, seed=seed)]
                hits = np.mean([truth[i] == q for i in got])
                deep.append(hits)
                if depth == 0:
                    first.append(hits)
                banned |= set(got)
            for fold in np.unique(folds):
                sub = [c for c in lib if folds[c.track_id] == fold]
                small.append(np.mean([truth[s.candidate.track_id] == q
                                      for s in recommend(sub, q, 10, seed=seed)]))
            rand.append(np.mean([truth[i] == q for i in capped(rng.permutation(len(lib)),
                                                                 artists, 10)]))
            g = ranking(1 - gscore[:, QUADRANTS.index(q)], 1e-6, seed)
            genre.append(np.mean([truth[i] == q for i in capped(g, artists, 10)]))
            # Ablation: nearest to the quadrant centre among the quadrant's tracks.
            pts = np.array([c.point for c in lib])
            d = np.hypot(*(pts - CENTRES[q]).T)
            d[[c.quadrant != q for c in lib]] = np.inf
            centre.append(np.mean([truth[i] == q for i in capped(ranking(d, 0.02, seed),
                                                                   artists, 10)]))
        rows.append([q, *(f"{np.mean(x):.2f}" for x in (first, deep, small, centre, genre, rand))])
    return rows


def like_table(lib: list[Candidate], truth: list[str], genres: list[set[str]],
               has_emb: bool) -> list[list[str]]:
    """Share of "like" suggestions in the seed's true quadrant, every clip a seed once."""
    artists = [c.artist for c in lib]
    by_artist: dict[str, set[int]] = {}
    for c in lib:
        by_artist.setdefault(c.artist, set()).add(c.track_id)
    plain = [replace(c, embedding=None) for c in lib]
    vectors = np.array([c.embedding for c in lib]) if has_emb else None
    if vectors is not None:
        vectors -= vectors.mean(axis=0)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    variants = [("default: weight 0.5, confidence 0.25", lib, 0.5, 0.25)] if has_emb else []
    variants += [("valence/arousal only, confidence 0.25", plain, 1.0, 0.25),
                 ("valence/arousal only, no confidence term", plain, 1.0, 0.0)]
    if has_emb:
        variants += [("weight 0.5, no confidence term", lib, 0.5, 0.0),
                     ("weight 0.5, confidence 0.5", lib, 0.5, 0.5),
                     ("embedding only (weight 0), confidence 0.25", lib, 0.0, 0.25)]
    rows = []

    def row(name: str, picks: list[list[int]]) -> list[str]:
        same = np.mean([np.mean([truth[i] == truth[s] for i in p]) for s, p in enumerate(picks)])
        gap = np.mean([np.mean([math.dist(lib[i].point, lib[s].point) for i in p])
                       for s, p in enumerate(picks)])
        if vectors is None:
            return [name, f"{same:.3f}", f"{gap:.2f}", "–"]
        cos = np.mean([np.mean(vectors[p] @ vectors[s]) for s, p in enumerate(picks)])
        return [name, f"{same:.3f}", f"{gap:.2f}", f"{cos:.2f}"]

    for name, pool, weight, sure in variants:
        # The seed's own artist is excluded: its other songs would flatter the score.
        rows.append(row(name, [[s.candidate.track_id for s in recommend(
            pool, c, 10, exclude=by_artist[c.artist], like_weight=weight,
            confidence_weight=sure, min_confidence=0.0)] for c in pool]))
    rng = np.random.default_rng(0)
    rand, genre, surest = [], [], []
    for c in lib:
        banned = by_artist[c.artist]
        rand.append(capped(rng.permutation(len(lib)), artists, 10, banned))
        overlap = np.array([len(genres[c.track_id] & g) / max(1, len(genres[c.track_id] | g))
                            for g in genres])
        genre.append(capped(ranking(1 - overlap, 1e-6, c.track_id), artists, 10, banned))
        surest.append([s.candidate.track_id for s in recommend(
            lib, c.quadrant, 10, exclude=banned | {c.track_id}, min_confidence=0.0)])
    return [*rows, row("reference: surest of the seed's predicted quadrant", surest),
            row("genre baseline (Jaccard of genres)", genre), row("random baseline", rand)]


def journey_table(lib: list[Candidate], truth: list[str], seeds: int) -> list[list[str]]:
    """Per route and step count: steps that do not go back along the route (true moods)."""
    rows = []
    routes: tuple[Literal["line", "circumplex"], ...] = ("line", "circumplex")
    configs = [(route, steps, True) for route in routes for steps in STEPS]
    # Ablation: the ends given as the quadrant centres (points), not as moods (surest tracks).
    configs += [(route, 8, False) for route in routes]
    for route, steps, anchored in configs:
        toward, strict, ends, jump, jump_pred, rand = [], [], [], [], [], []
        for (a, b) in PAIRS:
            path = MoodPath(CENTRES[a], CENTRES[b], route)
            for seed in range(seeds):
                walk = journey(lib, a if anchored else CENTRES[a],
                               b if anchored else CENTRES[b], steps, route=route, seed=seed)
                ids = [s.candidate.track_id for s in walk]
                true_pts = np.array([CENTRES[truth[i]] for i in ids])
                t = path.project(true_pts)
                toward.append(np.mean(np.diff(t) >= -1e-9))
                strict.append(np.mean(np.diff(t) > 1e-9))
                ends.append(np.mean([truth[ids[0]] == a, truth[ids[-1]] == b]))
                jump.append(np.max(np.hypot(*np.diff(true_pts, axis=0).T)))
                pred = np.array([s.candidate.point for s in walk])
                jump_pred.append(np.max(np.hypot(*np.diff(pred, axis=0).T)))
                picks = np.random.default_rng(seed).choice(len(lib), steps, replace=False)
                tr = path.project(np.array([CENTRES[truth[i]] for i in picks]))
                rand.append(np.mean(np.diff(tr) >= -1e-9))
        name = route if anchored else f"{route}, ends at the centres (ablation)"
        rows.append([name, str(steps), *(f"{np.mean(x):.2f}" for x in
                                          (toward, strict, ends, jump_pred, jump, rand))])
    return rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per list and journey")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--embedding", choices=("shipped", "msd", "msd+mtt"), default="shipped",
                        help="the 'like' embedding: shipped is what the shipped head stores")
    parser.add_argument("--fused", type=Path, default=FUSED_OOF,
                        help="out-of-fold probabilities of the shipped fusion")
    args = parser.parse_args()
    start = time.perf_counter()
    rows, genre_map = load()
    truth = [r["quadrant"] for r in rows]
    folds = np.array([int(r["fold"]) for r in rows])
    emb = embeddings(rows, args.embedding)
    gscore = genre_scores(rows, genre_map)
    genres = [genre_map[r["song_id"]] for r in rows]
    described = (f"musicnn {args.embedding}, {emb.shape[1]} values"
                 if emb is not None else "none (no cache)")
    parts = [f"Command: `.venv/bin/python bench/recommend.py --seeds {args.seeds} --embedding "
             f"{args.embedding}` (720 clips, {len(set(r['artist'] for r in rows))} artists; "
             f"embedding: {described})."]
    for name, proba in predictions(rows, args.fused).items():
        lib = candidates(rows, proba, emb)
        acc = np.mean([c.quadrant == t for c, t in zip(lib, truth, strict=True)])
        parts += [f"\n### Stored moods: {name} out-of-fold predictions (accuracy {acc:.3f})",
                  "\nprecision@10 of `recommend(library, quadrant, 10)` (defaults: "
                  "min_confidence 0.4, one track per artist), mean over seeds:\n",
                  markdown(["quadrant", "list 1 (720)", "lists 1-5 (720, excluding earlier)",
                            "list 1 (fold, 144)", "ablation: nearest centre",
                            "genre baseline", "random baseline"],
                           quadrant_table(lib, truth, gscore, args.seeds, folds)),
                  "\n\"Like this track\": share of 10 suggestions in the seed's true quadrant, "
                  "every clip a seed, the seed's artist excluded:\n",
                  markdown(["ranking", "same true quadrant", "valence/arousal gap",
                            "embedding cosine (centred)"],
                           like_table(lib, truth, genres, emb is not None)),
                  "\nJourneys over the 720-clip library, " + ", ".join(
                      f"{a}->{b}" for a, b in PAIRS) + f", {args.seeds} seeds each; a "
                  "step goes toward the end when the TRUE quadrant centre of its track is "
                  "not behind the previous one's along the route:\n",
                  markdown(["route", "steps", "toward (not back)", "strictly forward",
                            "ends in true start/end quadrant", "largest jump (predicted)",
                            "largest jump (true centres)", "random order: toward"],
                           journey_table(lib, truth, args.seeds))]
    parts.append(f"\n({time.perf_counter() - start:.0f} s on this machine.)")
    text = "\n".join(parts)
    print(text)
    if not args.no_write:
        doc = DOC.read_text(encoding="utf-8")
        head, rest = doc.split(MARKERS[0], 1)
        DOC.write_text(f"{head}{MARKERS[0]}\n{text}\n{MARKERS[1]}{rest.split(MARKERS[1], 1)[1]}",
                       encoding="utf-8")


if __name__ == "__main__":
    main()
