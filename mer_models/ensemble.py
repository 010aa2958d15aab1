"""The stacking ensemble on audio descriptors, and loading the scikit-learn models we ship.

A scikit-learn model's card names a ``.skops`` artifact and, once converted at export time
(:func:`train.export.add_onnx`), the same model as ONNX. :func:`load_classifier` runs
the ONNX file through onnxruntime when the card lists it and it is present, so serving imports
neither skops nor scikit-learn (seconds of a cold start); otherwise it falls back to skops.

skops refuses to instantiate any type that is not trusted; we pass exactly the types our
training code produces (:data:`TRUSTED_TYPES`) and refuse a file that needs anything else,
so a tampered or foreign file cannot run code on load.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
from numpy.typing import NDArray

from mer_models.card import ModelCard
from mer_models.errors import ModelCardError, ModelError
from mer_models.model import ModelInputs, required
from mer_models.onnx import load_session

logger = logging.getLogger(__name__)

#: Types a shipped ensemble may contain beyond skops' defaults (scikit-learn's own estimators
#: and numpy/scipy containers are trusted by skops already).
TRUSTED_TYPES: Final[tuple[str, ...]] = (
    "imblearn.over_sampling._smote.base.SMOTE",
    "imblearn.pipeline.Pipeline",
    "sklearn.calibration._CalibratedClassifier",  # the Spotify model's calibrated SVM
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",  # SMOTE's neighbour index on
    "sklearn.neighbors._kd_tree.KDTree",  # tables large enough for a KD-tree
    "sklearn.tree._tree.Tree",
    "sklearn.utils._bunch.Bunch",
)
#: Metadata key of a converted model: its probability columns, as a JSON list.
ONNX_CLASSES_KEY: Final = "classes"
_ONNX_DTYPES: Final = {"tensor(double)": np.float64, "tensor(float)": np.float32}


class Classifier(Protocol):
    """What serving needs of a scikit-learn classifier, loaded from either file."""

    @property
    def n_features_in_(self) -> int:
        """Values in one input row."""
        ...

    def predict_proba(self, x: NDArray[np.float64]) -> NDArray[np.floating]:
        """Class probabilities, shape (n, n_classes), columns in the card's class order."""
        ...


class OnnxClassifier:
    """A scikit-learn classifier converted to ONNX, run by onnxruntime on the CPU.

    The graph (skl2onnx, ZipMap off) takes one tensor of shape (n, n_features) and answers a
    plain tensor of probabilities; the card's ``inputs`` and ``outputs`` name both, and the
    graph's metadata names the probability columns, which must be the card's classes.

    Parameters
    ----------
    artifact : path
        The ONNX file, already checked against the card's sha256 (:meth:`ModelCard.verify`).
    card : ModelCard
        Its card.
    threads : int
        Intra-op threads of the session (0: all cores). The graphs are small: one thread
        answers a row in about 0.1 ms.

    Raises
    ------
    ModelCardError
        The graph's input, output or classes differ from the card's.
    ModelError
        onnxruntime cannot load the file.
    """

    def __init__(self, artifact: Path, card: ModelCard, *, threads: int = 1) -> None:
        if card.onnx is None or not card.inputs or not card.outputs:
            raise ModelCardError(f"{artifact}: its card lacks the ONNX entry or the "
                                 "input/output schema")
        # ONNX-ML's tree and SVM kernels are CPU-only in onnxruntime: no GPU for these.
        self._session = load_session(artifact, card.onnx.sha256, threads=threads,
                                     prefer_gpu=False)
        self._input, self._output = card.inputs[0].name, card.outputs[0].name
        graph_input = self._session.get_inputs()[0]
        width = graph_input.shape[1] if len(graph_input.shape) == 2 else None
        if (graph_input.name != self._input or not isinstance(width, int)
                or card.inputs[0].shape[1:] != [width]
                or graph_input.type not in _ONNX_DTYPES
                or self._output not in {o.name for o in self._session.get_outputs()}):
            raise ModelCardError(
                f"{artifact}: the graph takes {graph_input.name!r} {graph_input.shape} "
                f"({graph_input.type}) and answers "
                f"{[o.name for o in self._session.get_outputs()]}; the card says "
                f"{self._input!r} {card.inputs[0].shape} and {self._output!r}")
        self._dtype = _ONNX_DTYPES[graph_input.type]
        self._width = width
        metadata = self._session.get_modelmeta().custom_metadata_map
        try:
            classes = [str(c) for c in json.loads(metadata[ONNX_CLASSES_KEY])]
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelCardError(f"{artifact}: the graph does not name its classes") from exc
        if classes != card.classes:
            raise ModelCardError(f"{artifact}: model classes {classes} differ from the card's "
                                 f"{card.classes}")

    @property
    def n_features_in_(self) -> int:
        """Values in one input row."""
        return self._width

    def predict_proba(self, x: NDArray[np.float64]) -> NDArray[np.floating]:
        """Class probabilities of rows ``x``, shape (n, n_features) -> (n, n_classes)."""
        batch = np.ascontiguousarray(x, dtype=self._dtype)
        (probabilities,) = self._session.run([self._output], {self._input: batch})
        return np.asarray(probabilities)


def load_skops(artifact: Path, card: ModelCard) -> Any:
    """A scikit-learn classifier from a verified ``.skops`` artifact, trusted types only.

    Parameters
    ----------
    artifact : path
        The file, already checked against ``card``'s sha256 (:meth:`ModelCard.verify`).
    card : ModelCard
        Its card: the classifier's ``classes_`` must equal ``card.classes``.

    Raises
    ------
    ModelCardError
        The file needs a type outside :data:`TRUSTED_TYPES` and skops' defaults, or its
        classes differ from the card's.
    ModelError
        skops cannot read the file.
    """
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(file=artifact)) - set(TRUSTED_TYPES)
    if untrusted:
        raise ModelCardError(f"{artifact}: refusing to load types outside the trusted list: "
                             + ", ".join(sorted(untrusted)))
    try:
        model = sio.load(artifact, trusted=list(TRUSTED_TYPES))
    except Exception as exc:  # skops raises many types on a damaged file
        raise ModelError(f"{artifact}: cannot load {card.display_name}: {exc}") from exc
    classes = [str(c) for c in getattr(model, "classes_", [])]
    if classes != card.classes:
        raise ModelCardError(f"{artifact}: model classes {classes} differ from the card's "
                             f"{card.classes}")
    return model


def load_classifier(card_path: Path, card: ModelCard, *, threads: int = 1) -> Classifier:
    """The classifier of a verified card: its ONNX conversion when present, else skops.

    Parameters
    ----------
    card_path : path
        Where ``card`` was read from; the files lie beside it.
    card : ModelCard
        The card, whose files :meth:`ModelCard.verify` has checked.
    threads : int
        Intra-op threads of an ONNX session (0: all cores).

    Raises
    ------
    ModelCardError
        The file does not match the card (classes, schema, untrusted types).
    ModelError
        The file cannot be read.
    """
    onnx = card.onnx_path(card_path)
    if onnx is not None:
        return OnnxClassifier(onnx, card, threads=threads)
    if card.onnx is not None:
        logger.warning("%s: %s is missing; loading %s with skops", card_path,
                       card.onnx.artifact, card.artifact)
    model: Classifier = load_skops(card.artifact_path(card_path), card)
    return model


def backend(classifier: Classifier) -> str:
    """``"onnxruntime"`` or ``"skops"``: which file a loaded classifier came from."""
    return "onnxruntime" if isinstance(classifier, OnnxClassifier) else "skops"


class DescriptorEnsemble:
    """Class probabilities from a descriptor vector with the stacking ensemble.

    Parameters
    ----------
    card_path : path
        The model card; the ``.skops`` artifact (and its ONNX conversion) lie beside it.
    feature_names : sequence of str, optional
        The engine's descriptor names; loading refuses a card with other features.
    preprocessing : dict, optional
        The engine's preprocessing; loading refuses a card that differs.
    threads : int
        Intra-op threads of the ONNX session (0: all cores).
    """

    def __init__(
        self,
        card_path: str | Path,
        *,
        feature_names: tuple[str, ...] | list[str] | None = None,
        preprocessing: dict[str, Any] | None = None,
        threads: int = 1,
    ) -> None:
        self.card_path = Path(card_path)
        self.card = ModelCard.load(self.card_path)
        if self.card.kind not in ("ensemble", "spotify-ensemble"):
            raise ModelCardError(f"{card_path}: kind {self.card.kind!r} is not an ensemble")
        if feature_names is not None and list(feature_names) != self.card.feature_names:
            raise ModelCardError(
                f"{card_path}: the model was trained on other descriptors "
                f"({len(self.card.feature_names)} named in the card, engine has "
                f"{len(feature_names)})"
            )
        self.card.verify(self.card_path, preprocessing=preprocessing)
        self._model = load_classifier(self.card_path, self.card, threads=threads)
        width = getattr(self._model, "n_features_in_", None)
        if self.card.feature_names and width not in (None, len(self.card.feature_names)):
            raise ModelCardError(f"{card_path}: the model takes {width} values, the card "
                                 f"names {len(self.card.feature_names)}")

    @property
    def backend(self) -> str:
        """``"onnxruntime"`` or ``"skops"``: which artifact is serving."""
        return backend(self._model)

    def predict(self, features: NDArray[np.floating]) -> NDArray[np.float32]:
        """Class probabilities.

        Parameters
        ----------
        features : ndarray, shape (n_features,) or (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples, n_classes), float32
        """
        x = np.atleast_2d(np.asarray(features, dtype=np.float64))
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        return np.asarray(self._model.predict_proba(x), dtype=np.float32)

    def quadrant_probabilities(self, inputs: ModelInputs) -> NDArray[np.float64]:
        """Clip probabilities, shape (1, 4), from the clip's descriptor vector."""
        vector = required(inputs.descriptors, "the descriptor vector", self.card)
        return self.predict(vector).astype(np.float64)
