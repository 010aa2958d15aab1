"""Export models to ONNX with their cards: the CLDNN (torch) and the scikit-learn models.

The scikit-learn models (the descriptor ensemble, the musicnn head, the Spotify model) are
saved as ``.skops`` and also converted with skl2onnx into ``<same stem>.onnx``, which the
card lists with its sha256 (:attr:`mer_models.card.ModelCard.onnx`): serving then runs
onnxruntime and never imports skops or scikit-learn. A conversion is written only after its
class probabilities match scikit-learn's on probe rows within :data:`PARITY_TOLERANCE`.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

from mer_models.card import ArtifactFile, ModelCard, TensorSpec, TrainingData, sha256_file
from mer_models.config import AnalysisConfig
from mer_models.ensemble import ONNX_CLASSES_KEY
from mer_models.errors import MerError
from mer_models.moods import QUADRANTS

if TYPE_CHECKING:
    from train.cldnn import Cldnn

logger = logging.getLogger(__name__)

INPUT_NAME = "logmel"
OUTPUT_NAME = "probabilities"
#: Input and output of a converted scikit-learn model.
SKLEARN_INPUT: Final = "features"
SKLEARN_OUTPUT: Final = "probabilities"
#: Largest difference of class probabilities from scikit-learn a conversion may show.
PARITY_TOLERANCE: Final = 1e-4
#: Probe rows a conversion is checked on when no data is given.
PROBE_ROWS: Final = 512


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones are skipped)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def export_onnx(model: Cldnn, path: str | Path, *, opset: int = 17) -> float:
    """Write ``model`` as a single-file ONNX graph with a dynamic batch axis.

    Uses the TorchScript-based exporter (``dynamo=False``): 0.4 s instead of about 40 s for
    this model, with the same numerical result.

    Returns
    -------
    float
        Largest absolute difference between torch and onnxruntime on a random batch.
    """
    import onnxruntime as ort
    import torch

    model = model.eval()
    cfg = model.config
    example = torch.randn(2, cfg.n_mels, cfg.frames) * 20 - 40
    with warnings.catch_warnings():
        # The LSTM batch-size warning does not apply: no initial state is passed, and the
        # tests check batches of 1 and 32 against torch.
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        torch.onnx.export(
            model, (example,), str(path), input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset, dynamo=False,
        )
    probe = (torch.randn(3, cfg.n_mels, cfg.frames) * 20 - 40)
    with torch.no_grad():
        expected = model(probe).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {INPUT_NAME: probe.numpy()})
    return float(np.max(np.abs(np.asarray(got) - expected)))


def cldnn_card(
    *,
    artifact: Path,
    version: str,
    model: Cldnn,
    analysis: AnalysisConfig,
    training: TrainingData,
    metrics: dict[str, Any],
    fusion_weight: float = 1.0,
    name: str = "mood-4q-cldnn",
    notes: str = "",
) -> ModelCard:
    """The card of an exported CLDNN (hash of the file at ``artifact``)."""
    cfg = model.config
    return ModelCard(
        name=name, version=version, kind="cldnn", artifact=artifact.name,
        sha256=sha256_file(artifact), classes=[q.value for q in QUADRANTS],
        preprocessing=analysis.preprocessing(),
        inputs=[TensorSpec(name=INPUT_NAME, shape=[None, cfg.n_mels, cfg.frames])],
        outputs=[TensorSpec(name=OUTPUT_NAME, shape=[None, cfg.n_classes])],
        architecture=cfg.to_dict(), fusion_weight=fusion_weight, training=training,
        metrics=metrics,
        libraries=library_versions("torch", "onnx", "onnxruntime", "numpy", "librosa"),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        notes=notes,
    )


# --- scikit-learn models ----------------------------------------------------------------------


class ConversionError(MerError):
    """skl2onnx cannot convert a model, or the conversion disagrees with scikit-learn."""


@dataclass(frozen=True)
class Converted:
    """One ``.skops`` artifact converted by :func:`convert_folder`."""

    card: Path
    onnx: Path
    max_abs_difference: float


def _width(model: Any) -> int:
    width = getattr(model, "n_features_in_", None)
    if not isinstance(width, int | np.integer):
        raise ConversionError(f"{type(model).__name__} is not a fitted estimator with "
                              "n_features_in_")
    return int(width)


def serving_estimator(model: Any) -> Any:
    """The estimator that predicts: ``model`` without the samplers of imblearn pipelines.

    A sampler (SMOTE) only acts in ``fit``; skl2onnx knows scikit-learn's Pipeline but not
    imblearn's, so the fitted steps are put in a scikit-learn Pipeline without it.
    """
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline):
        return model
    steps = [(name, serving_estimator(step)) for name, step in model.steps
             if step not in (None, "passthrough") and not hasattr(step, "fit_resample")]
    return Pipeline(steps)


def probe_rows(model: Any, *, n: int = PROBE_ROWS, seed: int = 0) -> NDArray[np.float64]:
    """Rows to compare a conversion on, drawn around the model's training data.

    When the model starts with a fitted scaler (``mean_`` and ``scale_``, as every pipeline
    of ours does), half the rows are drawn from its per-feature mean and scale and half with
    three times the scale (outliers), plus the mean and the zero row (what the descriptor
    ensemble feeds for a clip whose descriptors are all NaN); else standard normal rows.

    Returns
    -------
    ndarray, shape (n + 2, n_features), float64

    Raises
    ------
    ConversionError
        The model is not fitted (no ``n_features_in_``).
    """
    width = _width(model)
    first = model.steps[0][1] if hasattr(model, "steps") else model
    mean = np.asarray(getattr(first, "mean_", None), dtype=np.float64).reshape(-1)
    scale = np.asarray(getattr(first, "scale_", None), dtype=np.float64).reshape(-1)
    if mean.shape != (width,) or scale.shape != (width,):  # no scaler first (None: nan)
        mean, scale = np.zeros(width), np.ones(width)
    rng = np.random.default_rng(seed)
    spread = np.where(np.arange(n) < n // 2, 1.0, 3.0)[:, None]
    rows = mean + spread * scale * rng.standard_normal((n, width))
    return np.vstack([rows, mean, np.zeros(width)])


def export_sklearn_onnx(model: Any, path: str | Path, *, classes: list[str],
                        probe: NDArray[np.floating] | None = None, opset: int = 17) -> float:
    """Convert a fitted classifier with skl2onnx and write it, if it matches scikit-learn.

    The graph takes ``features`` (float64, shape (n, n_features)) and answers
    ``probabilities`` (float64, shape (n, n_classes), ZipMap off) and ``label``; its
    metadata names the probability columns (``classes``). float64 keeps the scaler, PCA, SVM
    and logistic regression as scikit-learn computes them; the trees compare float32 values,
    as scikit-learn's do.

    Parameters
    ----------
    model : estimator
        A fitted classifier or (imblearn) pipeline; samplers are left out
        (:func:`serving_estimator`).
    path : path
        Where to write the ``.onnx`` file.
    classes : list of str
        ``model.classes_`` as strings, recorded in the graph's metadata.
    probe : ndarray, shape (n, n_features), optional
        Rows to compare on (default: :func:`probe_rows`).
    opset : int
        ONNX opset of the main domain.

    Returns
    -------
    float
        Largest absolute difference of class probabilities between onnxruntime and
        ``model.predict_proba`` on the probe rows.

    Raises
    ------
    ConversionError
        skl2onnx is not installed or cannot convert the model, or the difference exceeds
        :data:`PARITY_TOLERANCE` (then nothing is written).
    """
    import onnxruntime as ort

    try:
        from onnx.helper import set_model_props
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import DoubleTensorType
    except ImportError as exc:
        raise ConversionError(f"{exc}: install the train extra (pip install -e '.[train]')"
                              ) from exc

    path = Path(path)
    width = _width(model)
    estimator = serving_estimator(model)
    try:
        with warnings.catch_warnings():
            # skl2onnx reads SVC's probA_/probB_, deprecated in scikit-learn 1.9; unused here.
            warnings.filterwarnings("ignore", message=r"Attribute `prob[AB]_`",
                                    category=FutureWarning)
            graph = convert_sklearn(
                estimator, name=path.stem, target_opset=opset,
                initial_types=[(SKLEARN_INPUT, DoubleTensorType([None, width]))],
                options={id(estimator): {"zipmap": False}},
            )
    except Exception as exc:  # skl2onnx raises many types for an unsupported model
        raise ConversionError(f"{path.name}: skl2onnx cannot convert "
                              f"{type(model).__name__}: {exc}") from exc
    graph.graph.name = path.stem  # skl2onnx names it with a random uuid: keep files stable
    set_model_props(graph, {ONNX_CLASSES_KEY: json.dumps(classes)})
    data = graph.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rows = probe_rows(model) if probe is None else np.asarray(probe, dtype=np.float64)
    (got,) = session.run([SKLEARN_OUTPUT], {SKLEARN_INPUT: rows})
    difference = float(np.max(np.abs(np.asarray(got) - model.predict_proba(rows))))
    if not difference <= PARITY_TOLERANCE:
        raise ConversionError(f"{path.name}: onnxruntime's probabilities differ from "
                              f"scikit-learn's by {difference:.3g} (> {PARITY_TOLERANCE})")
    path.write_bytes(data)
    return difference


def add_onnx(card: ModelCard, directory: str | Path, model: Any, *,
             probe: NDArray[np.floating] | None = None, strict: bool = False) -> ModelCard:
    """``card`` with ``model`` converted to ONNX beside its ``.skops`` artifact.

    Writes ``<stem of card.artifact>.onnx`` in ``directory`` and returns a copy of the card
    that lists it (:class:`~mer_models.card.ArtifactFile`: file, sha256, measured difference)
    with the graph's ``inputs`` and ``outputs``. Serving loads the ONNX file and falls back
    to the ``.skops`` file when a card has none.

    Parameters
    ----------
    card : ModelCard
        The card of ``model``'s ``.skops`` artifact.
    directory : path
        Folder of the artifact and the card.
    model : estimator
        The fitted classifier saved in the artifact.
    probe : ndarray, optional
        Rows to check the conversion on (default: :func:`probe_rows`).
    strict : bool
        Raise when the model cannot be converted; else log a warning and return ``card``
        unchanged (the model is still served, through skops).

    Raises
    ------
    ConversionError
        ``strict`` and skl2onnx failed or disagreed with scikit-learn.
    """
    path = Path(directory) / Path(card.artifact).with_suffix(".onnx").name
    try:
        rows = probe_rows(model) if probe is None else np.asarray(probe, dtype=np.float64)
        difference = export_sklearn_onnx(model, path, classes=card.classes, probe=rows)
    except ConversionError as exc:
        if strict:
            raise
        logger.warning("%s; serving it with skops", exc)
        return card
    described = ("rows drawn from the model's input scaler" if probe is None
                 else "the given rows")
    return card.model_copy(update={
        "onnx": ArtifactFile(artifact=path.name, sha256=sha256_file(path),
                             max_abs_difference=float(f"{difference:.3g}"),
                             probe=f"{len(rows)} {described}"),
        "inputs": [TensorSpec(name=SKLEARN_INPUT, shape=[None, _width(model)],
                              dtype="float64")],
        "outputs": [TensorSpec(name=SKLEARN_OUTPUT, shape=[None, len(card.classes)],
                               dtype="float64")],
        "libraries": {**card.libraries,
                      **library_versions("skl2onnx", "onnx", "onnxruntime")},
    })


def convert_folder(models_dir: str | Path) -> list[Converted]:
    """Convert every ``.skops`` artifact of a models folder to ONNX, in place.

    Each card whose artifact is a ``.skops`` file is verified (sha256), its model loaded with
    skops' trusted types, converted and checked (:func:`add_onnx`), and the card rewritten to
    list the ``.onnx`` file; nothing else in it changes (name, version, sha256 of the
    ``.skops`` file). Converting again rewrites the same bytes.

    Returns
    -------
    list of Converted
        One entry per converted artifact.

    Raises
    ------
    ConversionError
        A model cannot be converted or disagrees with scikit-learn (cards converted before
        it are kept).
    ModelError
        A card's artifact is missing, tampered with, or holds untrusted types.
    """
    from mer_models.ensemble import load_skops

    folder = Path(models_dir)
    done = []
    for card_path in sorted(folder.glob("*.json")):
        try:
            card = ModelCard.load(card_path)
        except MerError:
            logger.warning("skipping %s: not a valid model card", card_path)
            continue
        if not card.artifact.endswith(".skops"):
            continue
        model = load_skops(card.verify(card_path), card)
        converted = add_onnx(card, folder, model, strict=True)
        converted.save(card_path)
        entry = converted.onnx
        if entry is not None:  # always, with strict
            done.append(Converted(card_path, folder / entry.artifact,
                                  entry.max_abs_difference or 0.0))
    return done
