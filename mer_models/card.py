"""Model cards: the JSON file that ships beside every model artifact.

A card names the model, its ordered classes, the preprocessing it was trained with, its input
and output schema, its training data and metrics, the library versions, and the sha256 of the
artifact. :meth:`ModelCard.verify` refuses an artifact whose hash or preprocessing does not
match, so a model is never run on input it was not trained for.

A scikit-learn model's card may also list the same model converted to ONNX (``onnx``: file
and sha256), which serving runs through onnxruntime instead of importing skops and
scikit-learn; the ``.skops`` artifact stays the reference and the fallback.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mer_models.errors import MerError, ModelCardError, ModelNotFoundError

logger = logging.getLogger(__name__)

ModelKind = Literal["cldnn", "ensemble", "musicnn", "spotify-ensemble", "musicnn-msd",
                    "musicnn-mtt"]


class TensorSpec(BaseModel):
    """Name, shape (``None`` for a dynamic axis) and dtype of a model input or output."""

    model_config = ConfigDict(frozen=True)

    name: str
    shape: list[int | None]
    dtype: str = "float32"


class TrainingData(BaseModel):
    """Where the training data came from and how it was split."""

    dataset: str
    citation: str = ""
    license: str = ""
    n_clips: int = 0
    split: str = ""


class ArtifactFile(BaseModel):
    """Another file of the same model, with its hash: a scikit-learn model converted to ONNX.

    Attributes
    ----------
    artifact : str
        File name, relative to the card.
    sha256 : str
        Hex digest of the file's bytes.
    max_abs_difference : float or None
        Largest absolute difference between its class probabilities and the reference
        artifact's, measured when it was converted.
    probe : str
        What that difference was measured on.
    """

    model_config = ConfigDict(frozen=True)

    artifact: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    max_abs_difference: float | None = None
    probe: str = ""


class ModelCard(BaseModel):
    """The JSON card of one model artifact.

    Attributes
    ----------
    name, version : str
        Identify the model; ``f"{name}-{version}"`` is its display name.
    kind : {"cldnn", "ensemble", "musicnn", "spotify-ensemble", "musicnn-msd", "musicnn-mtt"}
        Which runner loads the artifact.
    artifact : str
        File name of the artifact, relative to the card.
    sha256 : str
        Hex digest of the artifact's bytes.
    classes : list of str
        Output classes in order (``["Q1", "Q2", "Q3", "Q4"]`` for mood models).
    preprocessing : dict
        :meth:`mer_models.config.AnalysisConfig.preprocessing` at training time.
    inputs, outputs : list of TensorSpec
        Input and output schema.
    feature_names : list of str
        Ordered input features of a descriptor model.
    architecture : dict
        Hyper-parameters that rebuild the network (CLDNN), for benchmarks and fine-tuning.
    fusion_weight : float
        Weight of this model's probabilities in the late fusion.
    onnx : ArtifactFile or None
        The scikit-learn model of ``artifact`` converted to ONNX; ``inputs`` and ``outputs``
        then describe that graph.
    """

    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str
    kind: ModelKind
    artifact: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    classes: list[str]
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    feature_names: list[str] = Field(default_factory=list)
    architecture: dict[str, Any] = Field(default_factory=dict)
    fusion_weight: float = Field(default=1.0, ge=0.0)
    training: TrainingData
    metrics: dict[str, Any] = Field(default_factory=dict)
    libraries: dict[str, str] = Field(default_factory=dict)
    created: str = ""
    notes: str = ""
    onnx: ArtifactFile | None = None

    @property
    def display_name(self) -> str:
        """``name-version``, as reported in results."""
        return f"{self.name}-{self.version}"

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        """Read and validate a card.

        Raises
        ------
        ModelNotFoundError
            The file does not exist.
        ModelCardError
            The file is not valid JSON or misses required fields.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelNotFoundError(f"{path}: no model card")
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except (ValidationError, ValueError) as exc:
            raise ModelCardError(f"{path}: invalid model card: {exc}") from exc

    def save(self, path: str | Path) -> None:
        """Write the card as indented JSON (without ``onnx`` when there is none)."""
        data = self.model_dump(mode="json", exclude={"onnx"} if self.onnx is None else None)
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def artifact_path(self, card_path: str | Path) -> Path:
        """The artifact's path, next to the card at ``card_path``."""
        return Path(card_path).parent / self.artifact

    def artifact_paths(self, card_path: str | Path) -> list[Path]:
        """Every file the card lists, next to it: the artifact, then its ONNX conversion."""
        paths = [self.artifact_path(card_path)]
        if self.onnx is not None:
            paths.append(Path(card_path).parent / self.onnx.artifact)
        return paths

    def onnx_path(self, card_path: str | Path) -> Path | None:
        """The ONNX conversion the card lists, when that file is present (else None).

        Call :meth:`verify` first: it checks the file's hash.
        """
        if self.onnx is None:
            return None
        path = Path(card_path).parent / self.onnx.artifact
        return path if path.is_file() else None

    def verify(self, card_path: str | Path, *, preprocessing: dict[str, Any] | None = None) -> Path:
        """Check the artifacts' hashes and, optionally, the preprocessing settings.

        The artifact must be present; the ONNX conversion is checked when its file is there
        (a folder copied without it still serves the artifact).

        Parameters
        ----------
        card_path : path
            Where this card was read from; the artifact lies beside it.
        preprocessing : dict, optional
            The engine's preprocessing; every key recorded in the card must match.

        Returns
        -------
        Path
            The verified artifact.

        Raises
        ------
        ModelNotFoundError
            The artifact is missing.
        ModelCardError
            A hash or a preprocessing setting differs.
        """
        artifact = self.artifact_path(card_path)
        if not artifact.is_file():
            raise ModelNotFoundError(f"{artifact}: artifact named by {card_path} is missing")
        _check_hash(artifact, self.sha256)
        onnx = self.onnx_path(card_path)
        if onnx is not None and self.onnx is not None:
            _check_hash(onnx, self.onnx.sha256)
        if preprocessing is not None:
            differences = {
                key: (value, preprocessing.get(key))
                for key, value in self.preprocessing.items()
                if key in preprocessing and preprocessing[key] != value
            }
            if differences:
                detail = ", ".join(f"{k}: card {a!r} vs engine {b!r}"
                                   for k, (a, b) in differences.items())
                raise ModelCardError(f"{card_path}: preprocessing differs ({detail})")
        return artifact


def _check_hash(path: Path, expected: str) -> None:
    digest = sha256_file(path)
    if digest != expected:
        raise ModelCardError(f"{path}: sha256 {digest[:12]}... does not match its card "
                             f"({expected[:12]}...); refusing to load")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_cards(models_dir: str | Path) -> dict[str, Path]:
    """The newest card of each kind in a folder.

    Versions compare as numbers where they are numbers (``"10"`` is newer than ``"9"``,
    ``"1.10"`` than ``"1.9"``); a version that is not numeric sorts before numeric ones, and
    the card's ``created`` stamp breaks ties.

    Parameters
    ----------
    models_dir : path
        Folder of ``*.json`` cards beside their artifacts.

    Returns
    -------
    dict
        ``{kind: path}``, e.g. ``{"cldnn": path, "ensemble": path}``, for the kinds present.
    """
    best: dict[str, tuple[tuple[tuple[int, ...], str, str], Path]] = {}
    for path in sorted(Path(models_dir).glob("*.json")):
        try:
            card = ModelCard.load(path)
        except MerError:
            logger.warning("skipping %s: not a valid model card", path)
            continue
        key = (version_key(card.version), card.version, card.created)
        if card.kind not in best or key > best[card.kind][0]:
            best[card.kind] = (key, path)
    return {kind: path for kind, (_, path) in best.items()}


def version_key(version: str) -> tuple[int, ...]:
    """``"1.10"`` -> ``(1, 10)``; ``()`` for a version that is not dot-separated numbers."""
    parts = version.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else ()
