"""The stacking ensemble on audio descriptors: build, tune on artist-disjoint folds, save."""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from numpy.typing import NDArray
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier, StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from mer_models.card import ModelCard, TrainingData, sha256_file
from mer_models.config import AnalysisConfig
from mer_models.features import DESCRIPTOR_NAMES
from train.export import add_onnx, library_versions

#: Grid searched on macro-F1 over the artist-disjoint folds (names are Pipeline paths).
PARAM_GRID: dict[str, list[Any]] = {
    "pca__n_components": [0.95, 0.99],
    "stack__svm__C": [1.0, 4.0],
    "stack__svm__gamma": ["scale", 0.003],
}


def build_ensemble(*, seed: int = 0, n_trees: int = 200, svm_c: float = 4.0,
                   svm_gamma: float | str = "scale",
                   pca_components: float | int = 0.99, max_depth: int | None = 8,
                   smote_neighbors: int = 5) -> Pipeline:
    """StandardScaler -> PCA -> SMOTE -> Stacking(SVM, decision tree, random forest).

    SMOTE sits inside the imblearn Pipeline, so it only resamples training data: at
    prediction time the step is skipped.

    Parameters
    ----------
    seed : int
        Random state of every randomised step.
    n_trees : int
        Trees of the random forest.
    svm_c, svm_gamma : float
        C and kernel width of the RBF SVM.
    pca_components : float or int
        Kept variance (float < 1) or component count.
    max_depth : int or None
        Depth of the single decision tree.
    smote_neighbors : int
        Neighbours SMOTE interpolates between.

    Returns
    -------
    imblearn.pipeline.Pipeline
    """
    stack = StackingClassifier(
        estimators=[
            # The SVM contributes its decision function (stack_method="auto"): SVC's Platt
            # probabilities are deprecated since scikit-learn 1.9 and add an internal CV.
            ("svm", SVC(C=svm_c, kernel="rbf", gamma=svm_gamma, class_weight="balanced",
                        random_state=seed)),
            ("tree", DecisionTreeClassifier(max_depth=max_depth, class_weight="balanced",
                                            random_state=seed)),
            ("forest", RandomForestClassifier(n_estimators=n_trees, min_samples_leaf=2,
                                              class_weight="balanced", n_jobs=1,
                                              random_state=seed)),
        ],
        final_estimator=LogisticRegression(C=1.0, max_iter=2000),
        stack_method="auto",
        cv=5,
        n_jobs=1,
    )
    return Pipeline([
        ("scale", StandardScaler()),
        ("pca", PCA(n_components=pca_components, svd_solver="full", random_state=seed)),
        ("smote", SMOTE(k_neighbors=smote_neighbors, random_state=seed)),
        ("stack", stack),
    ])


def grid_search(x: NDArray[np.floating], y: NDArray[np.str_] | Sequence[str],
                folds: NDArray[np.integer], *, seed: int = 0,
                grid: dict[str, list[Any]] | None = None, n_jobs: int = 1,
                cv: Any = None) -> GridSearchCV:
    """Tune the ensemble on macro-F1 with the given (artist-disjoint) folds.

    Parameters
    ----------
    x : ndarray, shape (n_clips, n_features)
    y : sequence of str
        Quadrant labels.
    folds : ndarray, shape (n_clips,)
        Fold index of every clip; every fold is held out once.
    cv : iterable of (train, test) index arrays, optional
        Splits used instead of ``folds`` (rows that only train, such as the users' clips of
        :func:`train.feedback.fold_splits`); the final model is refitted on every row.
    """
    splits = cv if cv is not None else PredefinedSplit(np.asarray(folds))
    search = GridSearchCV(build_ensemble(seed=seed), grid or PARAM_GRID, scoring="f1_macro",
                          cv=splits, n_jobs=n_jobs, refit=True)
    return search.fit(np.asarray(x), np.asarray(y))


def save_ensemble(model: Pipeline, directory: str | Path, *, version: str,
                  analysis: AnalysisConfig, training: TrainingData, metrics: dict[str, Any],
                  fusion_weight: float = 1.0, name: str = "mood-4q-ensemble",
                  feature_names: Sequence[str] = DESCRIPTOR_NAMES,
                  kind: str = "ensemble", notes: str = "") -> Path:
    """Write ``{name}-{version}.skops``, its ONNX conversion and its card; return the card's path.

    The ``.onnx`` file (:func:`train.export.add_onnx`) is what serving runs; a model skl2onnx
    cannot convert faithfully is saved without it, with a warning, and served through skops.
    """
    import skops.io as sio

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    artifact = directory / f"{name}-{version}.skops"
    # Deflate: the forest's node arrays shrink about 7x (20 MB -> 2.7 MB), loading stays 0.2 s.
    sio.dump(model, artifact, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    card = ModelCard(
        name=name, version=version, kind=kind,  # type: ignore[arg-type]
        artifact=artifact.name, sha256=sha256_file(artifact),
        classes=[str(c) for c in model.classes_],
        preprocessing=analysis.preprocessing() if kind == "ensemble" else {},
        feature_names=list(feature_names), fusion_weight=fusion_weight, training=training,
        metrics=metrics,
        libraries=library_versions("scikit-learn", "imbalanced-learn", "skops", "numpy",
                                   "librosa"),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), notes=notes,
    )
    card = add_onnx(card, directory, model)
    card_path = directory / f"{name}-{version}.json"
    card.save(card_path)
    return card_path
