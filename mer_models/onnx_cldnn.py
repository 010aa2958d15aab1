"""The CLDNN spectrogram model, run through one cached onnxruntime session per process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mer_models.card import ModelCard
from mer_models.errors import ModelCardError
from mer_models.model import ModelInputs, required
from mer_models.onnx import load_session

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


class OnnxCldnn:
    """Quadrant probabilities from log-mel windows with the exported CLDNN.

    Parameters
    ----------
    card_path : path
        The model card (JSON); the ``.onnx`` artifact lies beside it.
    preprocessing : dict, optional
        The engine's preprocessing; loading refuses a card that differs.
    threads : int
        Intra-op threads of the session (0: onnxruntime's default, all cores).
    prefer_gpu : bool
        Use the CUDA provider when available.
    """

    def __init__(
        self,
        card_path: str | Path,
        *,
        preprocessing: dict[str, Any] | None = None,
        threads: int = 0,
        prefer_gpu: bool = True,
    ) -> None:
        self.card_path = Path(card_path)
        self.card = ModelCard.load(self.card_path)
        if self.card.kind != "cldnn":
            raise ModelCardError(f"{card_path}: kind {self.card.kind!r} is not a CLDNN")
        artifact = self.card.verify(self.card_path, preprocessing=preprocessing)
        self._session = load_session(artifact, self.card.sha256, threads=threads,
                                     prefer_gpu=prefer_gpu)
        self._check_schema()
        self._input = self._session.get_inputs()[0].name

    @property
    def providers(self) -> list[str]:
        """Providers the session actually runs on."""
        return list(self._session.get_providers())

    def _check_schema(self) -> None:
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        if not self.card.inputs or not self.card.outputs:
            raise ModelCardError(f"{self.card_path}: card lacks the input/output schema")
        expected_in, expected_out = self.card.inputs[0], self.card.outputs[0]
        if inputs[0].name != expected_in.name or outputs[0].name != expected_out.name:
            raise ModelCardError(
                f"{self.card_path}: model has input {inputs[0].name!r} and output "
                f"{outputs[0].name!r}, the card says {expected_in.name!r} / "
                f"{expected_out.name!r}"
            )
        static = [d if isinstance(d, int) else None for d in inputs[0].shape]
        if static[1:] != expected_in.shape[1:]:
            raise ModelCardError(
                f"{self.card_path}: model input shape {static} differs from the card's "
                f"{expected_in.shape}"
            )

    def predict(self, logmel: NDArray[np.float32]) -> NDArray[np.float32]:
        """Quadrant probabilities of each window.

        Parameters
        ----------
        logmel : ndarray, shape (n_windows, n_mels, frames)
            Log-mel windows from :func:`mer_models.features.extract_features`.

        Returns
        -------
        ndarray, shape (n_windows, 4), float32
            Rows sum to 1, classes in the card's order.
        """
        batch = np.ascontiguousarray(logmel, dtype=np.float32)
        (probabilities,) = self._session.run(None, {self._input: batch})
        return np.asarray(probabilities, dtype=np.float32)

    def quadrant_probabilities(self, inputs: ModelInputs) -> NDArray[np.float64]:
        """:meth:`predict` on the clip's log-mel windows (the :class:`MoodModel` interface)."""
        return self.predict(required(inputs.logmel, "log-mel windows", self.card)
                            ).astype(np.float64)
