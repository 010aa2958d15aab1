"""The stacking ensemble on audio descriptors, loaded with skops and a fixed trusted-type list.

skops refuses to instantiate any type that is not trusted; we pass exactly the types our
training code produces (:data:`TRUSTED_TYPES`) and refuse a file that needs anything else,
so a tampered or foreign file cannot run code on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from mer_models.card import ModelCard
from mer_models.errors import ModelCardError, ModelError
from mer_models.model import ModelInputs, required

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


def load_classifier(artifact: Path, card: ModelCard) -> Any:
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


class DescriptorEnsemble:
    """Class probabilities from a descriptor vector with the stacking ensemble.

    Parameters
    ----------
    card_path : path
        The model card; the ``.skops`` artifact lies beside it.
    feature_names : sequence of str, optional
        The engine's descriptor names; loading refuses a card with other features.
    preprocessing : dict, optional
        The engine's preprocessing; loading refuses a card that differs.
    """

    def __init__(
        self,
        card_path: str | Path,
        *,
        feature_names: tuple[str, ...] | list[str] | None = None,
        preprocessing: dict[str, Any] | None = None,
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
        artifact = self.card.verify(self.card_path, preprocessing=preprocessing)
        self._model = load_classifier(artifact, self.card)

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
