"""Reproduce the 2021 seed report's stacking-ensemble results on Spotify audio features.

The seed report classified the mood of 5,510 tracks from their Spotify audio features
(``../shared/data/spotify/seed_moods.csv``) with an SVM, a decision tree and a stacking
ensemble, under three label schemes: 4-class (sad, calm, happy, energetic), 3-class
(sad, calm, joyful = happy + energetic) and binary (negative = sad + calm, positive =
happy + energetic). This module reruns that protocol (stratified 80/20 split, SMOTE on the
training part only, standardised features) and renders the measured figures as Markdown.

It also builds the Spotify-feature model (4-class stacking ensemble on all rows) and maps its
probabilities into Russell quadrants. That model can never predict Q2 (tense / angry): the
seed table has no such class.

Run ``python -m train.seed_report [--data PATH] [--out docs/REPRODUCTION.md] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import platform
import shlex
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import imblearn
import numpy as np
import sklearn
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from numpy.typing import NDArray
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier, StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import classification_report, confusion_matrix
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from mer_models.spotify import (  # noqa: F401  (re-exported: training and serving share them)
    SEED_MOODS,
    SEED_TO_QUADRANT,
    SPOTIFY_FEATURES,
    to_quadrant_probabilities,
)

logger = logging.getLogger(__name__)

REPO_ROOT: Final[Path] = Path(__file__).resolve().parents[1]
DEFAULT_DATA_PATH: Final[Path] = (
    Path(__file__).resolve().parents[2] / "shared/data/spotify/seed_moods.csv"
)
DEFAULT_OUT_PATH: Final[Path] = REPO_ROOT / "docs/REPRODUCTION.md"


# Each scheme maps a seed mood to its label; SCHEME_CLASSES gives the label order in reports.
LABEL_SCHEMES: Final[dict[str, dict[str, str]]] = {
    "3-class": {"sad": "sad", "calm": "calm", "happy": "joyful", "energetic": "joyful"},
    "4-class": {mood: mood for mood in SEED_MOODS},
    "binary": {"sad": "negative", "calm": "negative", "happy": "positive", "energetic": "positive"},
}
SCHEME_CLASSES: Final[dict[str, tuple[str, ...]]] = {
    "3-class": ("sad", "calm", "joyful"),
    "4-class": SEED_MOODS,
    "binary": ("negative", "positive"),
}
MODEL_NAMES: Final[dict[str, str]] = {
    "svc": "SVM (SVC, RBF kernel, defaults)",
    "decision_tree": "Decision tree",
    "stacking": "Stacking (SVM + tree + random forest -> logistic regression)",
}

# The seed report's macro averages for the 3-class stacking ensemble (its Table 3), given to
# two decimals: a true value within REPORT_ROUNDING of each counts as matching.
REPORT_REFERENCE: Final[dict[str, float]] = {"precision": 0.76, "recall": 0.77, "f1": 0.76}
REPORT_ROUNDING: Final[float] = 0.005


@dataclass(frozen=True)
class SeedTable:
    """The seed table as arrays.

    Attributes
    ----------
    X : ndarray of float64, shape (n_tracks, len(SPOTIFY_FEATURES))
        Audio features in the order of :data:`SPOTIFY_FEATURES`.
    moods : ndarray of str, shape (n_tracks,)
        The playlist mood of each row (one of :data:`SEED_MOODS`).
    track_ids : ndarray of str, shape (n_tracks,)
        Spotify track ids; not unique (a track can sit in two mood playlists).
    """

    X: NDArray[np.float64]
    moods: NDArray[np.str_]
    track_ids: NDArray[np.str_]


def load_seed_table(path: str | os.PathLike[str]) -> SeedTable:
    """Read ``seed_moods.csv`` into arrays.

    Parameters
    ----------
    path : path-like
        CSV with a header holding ``id``, ``mood`` and every column of
        :data:`SPOTIFY_FEATURES` (other columns are ignored).

    Returns
    -------
    SeedTable
        Features, moods and track ids, one row per CSV row.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a file.
    ValueError
        A required column is missing, the table has no rows, a feature is not a finite
        number, or a mood is not one of :data:`SEED_MOODS`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"seed table not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in ("id", "mood", *SPOTIFY_FEATURES) if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path}: no data rows")
    X = np.empty((len(rows), len(SPOTIFY_FEATURES)), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, column in enumerate(SPOTIFY_FEATURES):
            try:
                X[i, j] = float(row[column])
            except (TypeError, ValueError):
                raise ValueError(
                    f"{path}: line {i + 2}, column {column!r}: {row[column]!r} is not a number"
                ) from None
    if not np.isfinite(X).all():
        line = int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0]) + 2
        raise ValueError(f"{path}: line {line}: non-finite feature value")
    moods = np.array([row["mood"].strip() for row in rows], dtype=np.str_)
    unknown = sorted(set(moods.tolist()) - set(SEED_MOODS))
    if unknown:
        raise ValueError(f"{path}: unknown mood(s) {unknown}; expected {list(SEED_MOODS)}")
    track_ids = np.array([row["id"] for row in rows], dtype=np.str_)
    return SeedTable(X=X, moods=moods, track_ids=track_ids)


def apply_scheme(moods: Sequence[str] | NDArray[np.str_], scheme: str) -> NDArray[np.str_]:
    """Relabel seed moods under a label scheme.

    Parameters
    ----------
    moods : sequence of str, length n
        Seed moods (sad, calm, happy, energetic).
    scheme : {"3-class", "4-class", "binary"}
        Target scheme, see :data:`LABEL_SCHEMES`.

    Returns
    -------
    ndarray of str, shape (n,)
        The label of each mood under ``scheme``.

    Raises
    ------
    ValueError
        Unknown scheme or mood.
    """
    if scheme not in LABEL_SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}; expected one of {list(LABEL_SCHEMES)}")
    mapping = LABEL_SCHEMES[scheme]
    try:
        return np.array([mapping[str(m)] for m in moods], dtype=np.str_)
    except KeyError as exc:
        raise ValueError(f"unknown mood {exc.args[0]!r}; expected {list(SEED_MOODS)}") from None


def make_pipeline(model: str, *, seed: int = 0, n_trees: int = 100) -> Pipeline:
    """An unfitted ``StandardScaler -> SMOTE -> model`` pipeline.

    SMOTE is a sampler step of an imblearn Pipeline, so it resamples only during ``fit``;
    ``predict`` passes the input through unchanged.

    Parameters
    ----------
    model : {"svc", "decision_tree", "stacking"}
        The classifier at the end of the pipeline.
    seed : int
        Random state of SMOTE, the tree and the forest.
    n_trees : int
        Trees of the stacking ensemble's random forest (scikit-learn's default, 100).

    Returns
    -------
    imblearn.pipeline.Pipeline
        Steps ``scale``, ``smote``, ``model``.
    """
    estimator: BaseEstimator
    if model == "svc":
        estimator = SVC()
    elif model == "decision_tree":
        estimator = DecisionTreeClassifier(random_state=seed)
    elif model == "stacking":
        # SVC(probability=True) is deprecated in scikit-learn 1.9; this is its documented
        # replacement (Platt scaling fitted on 5-fold out-of-fold decision values).
        svm = CalibratedClassifierCV(SVC(), ensemble=False)
        estimator = StackingClassifier(
            estimators=[
                ("svm", svm),
                ("tree", DecisionTreeClassifier(random_state=seed)),
                (
                    "forest",
                    RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=1),
                ),
            ],
            final_estimator=LogisticRegression(max_iter=1000),
            n_jobs=1,
        )
    else:
        raise ValueError(f"unknown model {model!r}; expected one of {list(MODEL_NAMES)}")
    return Pipeline(
        [("scale", StandardScaler()), ("smote", SMOTE(random_state=seed)), ("model", estimator)]
    )


def reproduce(
    path: str | os.PathLike[str] = DEFAULT_DATA_PATH,
    seed: int = 0,
    *,
    n_trees: int = 100,
    spread_seeds: Sequence[int] = (),
) -> dict[str, Any]:
    """Rerun the seed report's experiments.

    For each label scheme: a stratified 80/20 split (``random_state=seed``), then each model
    of :data:`MODEL_NAMES` fitted as ``StandardScaler -> SMOTE -> model`` on the training part
    and scored on the untouched test part.

    Parameters
    ----------
    path : path-like
        The seed table (``seed_moods.csv``).
    seed : int
        Seed of the split, SMOTE, the tree and the forest.
    n_trees : int
        Trees of the stacking ensemble's random forest.
    spread_seeds : sequence of int
        Further seeds on which only the 3-class stacking ensemble is refitted (new split,
        SMOTE and forest), to show how much its macro scores move from split to split.

    Returns
    -------
    dict
        ``data`` (path, row and class counts, features), ``seed``, ``versions``,
        ``seconds`` (total wall time) and ``schemes``: for each scheme its ``classes``,
        train/test sizes and class counts, and per model the ``report``
        (``classification_report(..., output_dict=True)``), ``confusion_matrix``
        (rows true, columns predicted, in ``classes`` order) and ``seconds``. The stacking
        model also has ``bootstrap``: 95 % intervals of its macro scores over 1,000
        resamples of the test rows. ``spread`` maps ``seed`` and each of ``spread_seeds``
        to the 3-class stacking macro ``precision``, ``recall`` and ``f1``.
    """
    started = time.perf_counter()
    table = load_seed_table(path)
    id_counts = Counter(table.track_ids.tolist())
    moods_of_id: dict[str, set[str]] = {}
    for track_id, mood in zip(table.track_ids.tolist(), table.moods.tolist(), strict=True):
        moods_of_id.setdefault(track_id, set()).add(mood)
    results: dict[str, Any] = {
        "data": {
            "path": str(path),
            "n_rows": len(table.moods),
            "n_unique_ids": len(id_counts),
            "n_repeated_ids": sum(1 for c in id_counts.values() if c > 1),
            "n_conflicting_ids": sum(1 for m in moods_of_id.values() if len(m) > 1),
            "class_counts": {m: int(np.sum(table.moods == m)) for m in SEED_MOODS},
            "features": list(SPOTIFY_FEATURES),
        },
        "seed": seed,
        "n_trees": n_trees,
        "versions": _versions(),
        "schemes": {},
    }
    for scheme, classes in SCHEME_CLASSES.items():
        y = apply_scheme(table.moods, scheme)
        X_train, X_test, y_train, y_test = train_test_split(
            table.X, y, test_size=0.2, stratify=y, random_state=seed
        )
        entry: dict[str, Any] = {
            "classes": list(classes),
            "n_train": len(y_train),
            "n_test": len(y_test),
            "train_counts": {c: int(np.sum(y_train == c)) for c in classes},
            "test_counts": {c: int(np.sum(y_test == c)) for c in classes},
            "models": {},
        }
        for model in MODEL_NAMES:
            logger.info("%s: fitting %s on %d rows", scheme, model, len(y_train))
            t0 = time.perf_counter()
            pipeline = make_pipeline(model, seed=seed, n_trees=n_trees).fit(X_train, y_train)
            y_pred = np.asarray(pipeline.predict(X_test))
            scores: dict[str, Any] = {
                "report": classification_report(
                    y_test, y_pred, labels=list(classes), output_dict=True, zero_division=0
                ),
                "confusion_matrix": confusion_matrix(y_test, y_pred, labels=list(classes))
                .astype(int)
                .tolist(),
                "seconds": time.perf_counter() - t0,
            }
            if model == "stacking":
                scores["bootstrap"] = _bootstrap_macro(y_test, y_pred, classes, seed=seed)
            entry["models"][model] = scores
        results["schemes"][scheme] = entry
    macro = results["schemes"]["3-class"]["models"]["stacking"]["report"]["macro avg"]
    results["spread"] = {seed: _macro(macro)}
    y = apply_scheme(table.moods, "3-class")
    for other in spread_seeds:
        logger.info("3-class: fitting stacking with seed %d", other)
        X_train, X_test, y_train, y_test = train_test_split(
            table.X, y, test_size=0.2, stratify=y, random_state=other
        )
        y_pred = make_pipeline("stacking", seed=other, n_trees=n_trees).fit(X_train, y_train)
        report = classification_report(
            y_test, y_pred.predict(X_test), output_dict=True, zero_division=0
        )
        results["spread"][other] = _macro(report["macro avg"])
    results["seconds"] = time.perf_counter() - started
    return results


def build_spotify_model(
    path: str | os.PathLike[str] = DEFAULT_DATA_PATH, *, seed: int = 0, n_trees: int = 100
) -> Pipeline:
    """Fit the Spotify-feature model: 4-class stacking ensemble on every row of the table.

    Parameters
    ----------
    path : path-like
        The seed table (``seed_moods.csv``).
    seed : int
        Random state of SMOTE, the tree and the forest.
    n_trees : int
        Trees of the random forest.

    Returns
    -------
    imblearn.pipeline.Pipeline
        Fitted ``StandardScaler -> SMOTE -> StackingClassifier``; its input is the columns of
        :data:`SPOTIFY_FEATURES` in order, ``classes_`` are the four seed moods (sorted).
        Map its ``predict_proba`` to quadrants with :func:`to_quadrant_probabilities`.
    """
    table = load_seed_table(path)
    model = make_pipeline("stacking", seed=seed, n_trees=n_trees)
    return model.fit(table.X, apply_scheme(table.moods, "4-class"))


def render_markdown(results: Mapping[str, Any], *, command: str | None = None) -> str:
    """Render :func:`reproduce` results as the reproduction report.

    Parameters
    ----------
    results : mapping
        The dict returned by :func:`reproduce`.
    command : str, optional
        The command that produced the results; defaults to ``results["command"]`` or a
        reconstruction from the data path and seed.

    Returns
    -------
    str
        Markdown: data and method, Tables 1-3 (3-class per-class scores of each model),
        4-class and binary summaries, stacking confusion matrices, comparison with the
        report's figures and the command.
    """
    data, schemes = results["data"], results["schemes"]
    if command is None:
        command = results.get("command") or (
            f"python -m train.seed_report --data {shlex.quote(data['path'])} "
            f"--seed {results['seed']}"
        )
    counts = ", ".join(f"{m} {n:,}" for m, n in data["class_counts"].items())
    lines = ["# Reproducing the 2021 seed report (Spotify audio features)", ""]
    lines += _paragraph(
        "Generated by `train/seed_report.py`; every figure below was measured by the command at",
        "the end of this page. Do not edit by hand: rerun the command.",
    )
    lines += ["## Data", ""]
    lines += _paragraph(
        f"`seed_moods.csv` holds {data['n_rows']:,} tracks taken from Spotify playlists:",
        f"{counts}. The labels are weak: a track's mood is the mood of the playlist it came",
        "from, and no listener rated any track. The classes are very unbalanced (sad and happy",
        f"together are {_share(data, ('sad', 'happy'))} of the rows). The table has",
        f"{data['n_unique_ids']:,} distinct track ids: {data['n_repeated_ids']} occur more than",
        f"once, {data['n_conflicting_ids']} of those under different moods (one track in two",
        "mood playlists, same features). All rows are kept, as in the report, so a track can",
        "sit on both sides of a split, possibly with contradictory labels.",
    )
    lines += _paragraph(
        "Spotify stopped serving audio features (and preview URLs) to new applications on",
        "2024-11-27, so this model is only for users who still hold such features; it is not",
        "the engine's main path for new tracks.",
    )
    lines += ["## Method", ""]
    lines += _paragraph(
        f"Features ({len(data['features'])}): {', '.join(data['features'])}. `duration_ms` is",
        "left out (it describes the release and the playlist's curation, not the emotion",
        "heard). For each label scheme: stratified 80/20 split",
        f"(`random_state={results['seed']}`), then an imblearn",
        "`Pipeline(StandardScaler -> SMOTE -> model)` fitted on the training",
        "part only (SMOTE never touches the test part) and scored on the test part. Models:",
        "default `SVC`; `DecisionTreeClassifier`; `StackingClassifier` of an SVM with",
        "Platt-scaled probabilities (`CalibratedClassifierCV(SVC(), ensemble=False)`, the",
        "scikit-learn 1.9 replacement of `SVC(probability=True)`), a decision tree and a random",
        f"forest ({results.get('n_trees', 100)} trees), with a logistic-regression final",
        "estimator (5-fold stacking). No hyper-parameter was tuned.",
    )
    three = schemes["3-class"]
    lines += [
        "## 3-class scheme (sad / calm / joyful)",
        "",
        f"Test part: {_counts_text(three['test_counts'])} ({three['n_test']:,} tracks); "
        f"training part: {_counts_text(three['train_counts'])}.",
        "",
    ]
    for number, (model, scores) in enumerate(three["models"].items(), start=1):
        lines += [f"**Table {number}. {MODEL_NAMES[model]}, 3-class.**", ""]
        lines += _per_class_table(scores["report"], three["classes"])
        lines.append("")
    for scheme in ("4-class", "binary"):
        entry = schemes[scheme]
        lines += [
            f"## {scheme} scheme ({' / '.join(entry['classes'])})",
            "",
            f"Test part: {_counts_text(entry['test_counts'])} ({entry['n_test']:,} tracks).",
            "",
        ]
        lines += _summary_table(entry)
        lines.append("")
    lines += ["## Confusion matrices of the stacking ensemble (test part)", ""]
    lines += ["Rows: true class; columns: predicted class.", ""]
    for scheme, entry in schemes.items():
        lines += [f"**{scheme}**", ""]
        lines += _confusion_table(entry["models"]["stacking"]["confusion_matrix"], entry["classes"])
        lines.append("")
    lines += _comparison(three, results.get("spread", {}))
    versions = ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    lines += [
        "## Command",
        "",
        "```",
        command,
        "```",
        "",
        f"Run time {results.get('seconds', float('nan')):.0f} s; {versions}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: run :func:`reproduce` and write the Markdown report.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default ``sys.argv[1:]``): ``--data``, ``--out``, ``--seed``.

    Returns
    -------
    int
        0 on success, 2 when the data file is missing.
    """
    parser = argparse.ArgumentParser(
        prog="python -m train.seed_report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_PATH, help="seed_moods.csv")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_PATH, help="Markdown to write")
    parser.add_argument("--seed", type=int, default=0, help="split / SMOTE / forest seed")
    parser.add_argument(
        "--spread-seeds",
        type=int,
        nargs="*",
        default=[1, 2, 3, 4],
        help="more seeds for the 3-class stacking ensemble only (split-to-split spread)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not args.data.is_file():
        print(
            f"error: seed table not found: {args.data}\n"
            "It lives outside the repository (../shared/data/spotify/seed_moods.csv); "
            "pass --data PATH.",
            file=sys.stderr,
        )
        return 2
    # One BLAS/OpenMP thread: the many tiny BLAS calls of calibration and stacking run several
    # times slower with threads fighting over shared cores (measured 5x on 2 cores).
    with threadpool_limits(limits=1):
        results = reproduce(args.data, seed=args.seed, spread_seeds=args.spread_seeds)
    command = shlex.join(
        [
            "python", "-m", "train.seed_report",
            "--data", _display_path(args.data),
            "--out", _display_path(args.out),
            "--seed", str(args.seed),
            "--spread-seeds", *map(str, args.spread_seeds),
        ]
    )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_markdown(results, command=command), encoding="utf-8")
    stack = results["schemes"]["3-class"]["models"]["stacking"]["report"]["macro avg"]
    print(
        f"wrote {args.out} in {results['seconds']:.0f} s; 3-class stacking macro "
        f"P/R/F1 {stack['precision']:.2f}/{stack['recall']:.2f}/{stack['f1-score']:.2f}"
    )
    return 0


def _macro(avg: Mapping[str, float]) -> dict[str, float]:
    return {"precision": avg["precision"], "recall": avg["recall"], "f1": avg["f1-score"]}


def _bootstrap_macro(
    y_true: NDArray[np.str_],
    y_pred: NDArray[np.str_],
    classes: Sequence[str],
    *,
    seed: int,
    n_resamples: int = 1000,
) -> dict[str, list[float]]:
    """95 % percentile intervals of macro precision, recall and F1 over test-row resamples."""
    index = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    t = np.array([index[c] for c in y_true.tolist()])
    p = np.array([index[c] for c in y_pred.tolist()])
    rng = np.random.default_rng(seed)
    draws = np.empty((n_resamples, 3))
    for r in range(n_resamples):
        pick = rng.integers(0, len(t), len(t))
        cm = np.bincount(t[pick] * k + p[pick], minlength=k * k).reshape(k, k).astype(float)
        tp = np.diag(cm)
        # zero_division=0, as in classification_report
        precision = np.divide(tp, cm.sum(axis=0), out=np.zeros(k), where=cm.sum(axis=0) > 0)
        recall = np.divide(tp, cm.sum(axis=1), out=np.zeros(k), where=cm.sum(axis=1) > 0)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
        draws[r] = precision.mean(), recall.mean(), f1.mean()
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return {
        name: [float(low[i]), float(high[i])]
        for i, name in enumerate(("precision", "recall", "f1"))
    }


def _per_class_table(report: Mapping[str, Any], classes: Sequence[str]) -> list[str]:
    rows = ["| class | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
    for name in [*classes, "macro avg", "weighted avg"]:
        r = report[name]
        rows.append(
            f"| {name} | {r['precision']:.2f} | {r['recall']:.2f} | {r['f1-score']:.2f} "
            f"| {int(r['support'])} |"
        )
    total = int(report["macro avg"]["support"])
    rows.append(f"| accuracy | | | {_accuracy(report):.2f} | {total} |")
    return rows


def _summary_table(entry: Mapping[str, Any]) -> list[str]:
    rows = [
        "| model | macro precision | macro recall | macro F1 | accuracy | fit + predict (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, scores in entry["models"].items():
        macro = scores["report"]["macro avg"]
        rows.append(
            f"| {MODEL_NAMES[model]} | {macro['precision']:.2f} | {macro['recall']:.2f} "
            f"| {macro['f1-score']:.2f} | {_accuracy(scores['report']):.2f} "
            f"| {scores['seconds']:.1f} |"
        )
    return rows


def _confusion_table(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> list[str]:
    rows = [
        "| true \\ predicted | " + " | ".join(classes) + " |",
        "| --- |" + " ---: |" * len(classes),
    ]
    rows += [
        f"| {c} | " + " | ".join(str(v) for v in row) + " |"
        for c, row in zip(classes, matrix, strict=True)
    ]
    return rows


def _comparison(three: Mapping[str, Any], spread: Mapping[int, Mapping[str, float]]) -> list[str]:
    stacking = three["models"]["stacking"]
    macro, ci = stacking["report"]["macro avg"], stacking["bootstrap"]
    rows = [
        "## Comparison with the seed report",
        "",
        "| 3-class stacking, macro avg | report | measured | measured - report "
        "| 95 % bootstrap interval |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    outside = []
    for metric, key in (("precision", "precision"), ("recall", "recall"), ("F1", "f1")):
        value = macro["f1-score" if key == "f1" else key]
        ref = REPORT_REFERENCE[key]
        low, high = ci[key]
        if ref + REPORT_ROUNDING < low or ref - REPORT_ROUNDING > high:
            outside.append(metric)
        rows.append(
            f"| {metric} | {ref:.2f} | {value:.3f} | {value - ref:+.3f} | {low:.3f} - {high:.3f} |"
        )
    if outside:
        verb = "lies" if len(outside) == 1 else "lie"
        verdict = (
            f"The reported {' and '.join(outside)} {verb} outside the measured interval, even"
            " allowing for the report's rounding to two decimals."
        )
    else:
        verdict = (
            "All three reported figures lie inside the measured intervals (allowing for the"
            " report's rounding to two decimals)."
        )
    rows.append("")
    rows += _paragraph(
        f"{verdict} The intervals resample the {three['n_test']:,} test tracks (1,000 draws);",
        "they show test-set noise only, not the spread over other splits or seeds. The sad",
        f"class has only {three['test_counts']['sad']} test tracks, so its per-class scores,",
        "and the macro averages that weigh it as much as the large classes, are the least",
        "stable figures here. The report's split, seed, hyper-parameters and library versions",
        "are unknown, so agreement within a few points is what a reproduction can show.",
    )
    if len(spread) > 1:
        rows += _spread_table(spread)
    return rows


def _spread_table(spread: Mapping[int, Mapping[str, float]]) -> list[str]:
    rows = [
        "Split-to-split spread: the 3-class stacking ensemble refitted with other seeds (each",
        "seed draws its own split, SMOTE samples and forest).",
        "",
        "| seed | macro precision | macro recall | macro F1 |",
        "| ---: | ---: | ---: | ---: |",
    ]
    rows += [
        f"| {seed} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} |"
        for seed, m in spread.items()
    ]
    stats = {
        key: np.array([m[key] for m in spread.values()]) for key in ("precision", "recall", "f1")
    }
    rows.append(
        "| mean (min - max) | "
        + " | ".join(f"{v.mean():.3f} ({v.min():.3f} - {v.max():.3f})" for v in stats.values())
        + " |"
    )
    rows.append("")
    above = [
        name
        for name, key in (("precision", "precision"), ("recall", "recall"), ("F1", "f1"))
        if REPORT_REFERENCE[key] - REPORT_ROUNDING > stats[key].max()
    ]
    if above:
        rows += _paragraph(
            f"The report's {' and '.join(above)} {'is' if len(above) == 1 else 'are'} higher than",
            f"on any of these {len(spread)} splits.",
        )
    else:
        rows += _paragraph(
            f"None of the report's figures is higher than the best of these {len(spread)} splits."
        )
    return rows


def _paragraph(*parts: str, width: int = 92) -> list[str]:
    """One Markdown paragraph wrapped at ``width``, followed by a blank line."""
    return [*textwrap.wrap(" ".join(parts), width=width, break_on_hyphens=False), ""]


def _accuracy(report: Mapping[str, Any]) -> float:
    # classification_report gives "accuracy" only when labels cover every class seen; with
    # explicit labels it may report micro avg instead.
    if "accuracy" in report:
        return float(report["accuracy"])
    return float(report["micro avg"]["f1-score"])


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in counts.items())


def _share(data: Mapping[str, Any], moods: Sequence[str]) -> str:
    return f"{sum(data['class_counts'][m] for m in moods) / data['n_rows']:.1%}"


def _display_path(path: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), REPO_ROOT)
    except ValueError:  # another drive on Windows
        return str(path)


def _versions() -> dict[str, str]:
    return {
        "Python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "imbalanced-learn": imblearn.__version__,
    }


if __name__ == "__main__":
    raise SystemExit(main())


def save_spotify_model(
    directory: str | os.PathLike[str],
    path: str | os.PathLike[str] = DEFAULT_DATA_PATH,
    *,
    version: str = "1",
    n_trees: int = 40,
) -> Path:
    """Fit :func:`build_spotify_model` on the whole table and save it with its card.

    The shipped forest has 40 trees (the report's tables use 100): it keeps the file near
    3 MB instead of 8.5 MB.

    Returns
    -------
    Path
        The card (``mood-spotify-ensemble-<version>.json``), beside its skops artifact.
    """
    from mer_models.card import TrainingData
    from mer_models.config import AnalysisConfig
    from train.ensemble import save_ensemble

    with threadpool_limits(limits=1):
        model = build_spotify_model(path, n_trees=n_trees)
    training = TrainingData(
        dataset="seed report's Spotify table (5,510 tracks, playlist moods)",
        license="Spotify audio features of public playlists; labels are weak",
        n_clips=5510, split="all rows (figures in docs/REPRODUCTION.md: 80/20 split)",
    )
    return save_ensemble(
        model, Path(directory), version=version, analysis=AnalysisConfig(), training=training,
        metrics={}, name="mood-spotify-ensemble", feature_names=SPOTIFY_FEATURES,
        kind="spotify-ensemble",
        notes=f"random forest of {n_trees} trees; 4 seed moods; map to quadrants with "
              "mer_models.spotify.to_quadrant_probabilities "
              "(P(Q1)=happy+energetic, P(Q2)=0, P(Q3)=sad, P(Q4)=calm)",
    )
