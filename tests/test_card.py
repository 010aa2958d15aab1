"""Model cards: JSON round trip, artifact hash and preprocessing checks, invalid cards."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mer_models.card import ModelCard, TensorSpec, TrainingData, sha256_file
from mer_models.config import AnalysisConfig
from mer_models.errors import MerError, ModelCardError, ModelError, ModelNotFoundError


@pytest.fixture
def artifact(tmp_path: Path, rng: np.random.Generator) -> Path:
    """A fake model artifact: random bytes."""
    path = tmp_path / "model.onnx"
    path.write_bytes(rng.bytes(4096))
    return path


@pytest.fixture
def card(artifact: Path, config: AnalysisConfig) -> ModelCard:
    return ModelCard(
        name="mood-4q-cldnn", version="1.2.0", kind="cldnn", artifact=artifact.name,
        sha256=sha256_file(artifact), classes=["Q1", "Q2", "Q3", "Q4"],
        preprocessing=config.preprocessing(),
        inputs=[TensorSpec(name="logmel", shape=[None, 128, 216])],
        outputs=[TensorSpec(name="probabilities", shape=[None, 4])],
        architecture={"channels": [4, 8, 8]}, fusion_weight=0.6,
        training=TrainingData(dataset="synthetic", n_clips=32, split="none"),
        metrics={"macro_f1": 0.5}, libraries={"numpy": np.__version__},
        created="2025-01-01T00:00:00+00:00", notes="test card",
    )


@pytest.fixture
def card_path(card: ModelCard, artifact: Path) -> Path:
    path = artifact.with_suffix(".json")
    card.save(path)
    return path


def _reason(exc: BaseException, path: Path) -> str:
    """The message without the path (tmp_path holds the test's name, which would match too)."""
    message = str(exc)
    assert str(path) in message
    return message.replace(str(path), "<path>")


def _card_json(card_path: Path) -> dict[str, Any]:
    return json.loads(card_path.read_text(encoding="utf-8"))


def test_round_trip(card: ModelCard, card_path: Path) -> None:
    loaded = ModelCard.load(card_path)
    assert loaded == card
    assert loaded.display_name == "mood-4q-cldnn-1.2.0"
    assert loaded.inputs[0].shape == [None, 128, 216]
    assert card_path.read_text(encoding="utf-8").endswith("}\n")


def test_verify_returns_artifact(card_path: Path, artifact: Path, config: AnalysisConfig) -> None:
    card = ModelCard.load(card_path)
    assert card.verify(card_path) == artifact
    assert card.verify(card_path, preprocessing=config.preprocessing()) == artifact


def test_sha256_file_matches_hashlib(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.bytes(3 * (1 << 20) + 17)  # spans several 1 MiB read blocks
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("position", [0, 2048, -1])
def test_changed_artifact_byte_is_refused(card_path: Path, artifact: Path, position: int) -> None:
    data = bytearray(artifact.read_bytes())
    data[position] ^= 0x01
    artifact.write_bytes(bytes(data))
    card = ModelCard.load(card_path)
    with pytest.raises(ModelCardError) as info:
        card.verify(card_path)
    assert "sha256" in _reason(info.value, artifact)


def test_missing_artifact(card_path: Path, artifact: Path) -> None:
    artifact.unlink()
    with pytest.raises(ModelNotFoundError) as info:
        ModelCard.load(card_path).verify(card_path)
    assert "missing" in _reason(info.value, artifact)


def test_missing_card(tmp_path: Path) -> None:
    path = tmp_path / "nothing.json"
    with pytest.raises(ModelNotFoundError) as info:
        ModelCard.load(path)
    assert "no model card" in _reason(info.value, path)


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"[1, 2, 3]", b"null", b"\xff\xfe\x00garbage"],
    ids=["empty", "broken-json", "list", "null", "not-utf8"],
)
def test_invalid_json(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "card.json"
    path.write_bytes(content)
    with pytest.raises(ModelCardError) as info:
        ModelCard.load(path)
    assert "invalid model card" in _reason(info.value, path)


@pytest.mark.parametrize("field", ["name", "version", "kind", "artifact", "sha256", "classes",
                                   "training"])
def test_missing_field(card_path: Path, field: str) -> None:
    data = _card_json(card_path)
    del data[field]
    card_path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelCardError) as info:
        ModelCard.load(card_path)
    reason = _reason(info.value, card_path)
    assert "invalid model card" in reason
    assert re.search(rf"\b{field}\b", reason)
    assert "Field required" in reason


@pytest.mark.parametrize(
    ("field", "value"),
    [("sha256", "ABC"), ("sha256", "0" * 63), ("kind", "transformer"), ("fusion_weight", -0.5),
     ("classes", "Q1"), ("inputs", [{"name": "x", "shape": ["a"]}])],
)
def test_invalid_field(card_path: Path, field: str, value: Any) -> None:
    data = _card_json(card_path)
    data[field] = value
    card_path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelCardError) as info:
        ModelCard.load(card_path)
    assert re.search(rf"\b{field}\b", _reason(info.value, card_path))


@pytest.mark.parametrize(
    ("field", "card_value", "engine_value"),
    [("n_mels", 64, 128), ("sample_rate", 16_000, 22_050), ("db_floor", -80.0, -100.0)],
)
def test_preprocessing_mismatch(
    card: ModelCard, artifact: Path, config: AnalysisConfig, field: str, card_value: Any,
    engine_value: Any,
) -> None:
    card = card.model_copy(update={"preprocessing": {**config.preprocessing(), field: card_value}})
    path = artifact.with_suffix(".json")
    card.save(path)
    engine = config.preprocessing()
    assert engine[field] == engine_value
    with pytest.raises(ModelCardError) as info:
        ModelCard.load(path).verify(path, preprocessing=engine)
    reason = _reason(info.value, path)
    assert "preprocessing differs" in reason
    assert f"{field}: card {card_value!r} vs engine {engine_value!r}" in reason
    # Fields that agree are not listed.
    assert "hop_length" not in reason


def test_extra_engine_keys_are_ignored(
    card: ModelCard, artifact: Path, config: AnalysisConfig
) -> None:
    card = card.model_copy(update={"preprocessing": {"sample_rate": 22_050, "n_mels": 128}})
    path = artifact.with_suffix(".json")
    card.save(path)
    engine = {**config.preprocessing(), "n_windows": 5, "max_duration": 30.0, "new_setting": 1}
    assert ModelCard.load(path).verify(path, preprocessing=engine) == artifact


def test_errors_share_a_root() -> None:
    assert issubclass(ModelCardError, ModelError)
    assert issubclass(ModelNotFoundError, ModelError)
    assert issubclass(ModelError, MerError)


@pytest.mark.parametrize(("versions", "newest"), [
    (["9", "10"], "10"),
    (["1.9", "1.10", "1.2"], "1.10"),
    (["test", "2"], "2"),  # a numbered version beats a name
])
def test_find_cards_takes_the_newest_version_as_a_number(card: ModelCard, tmp_path: Path,
                                                         versions: list[str],
                                                         newest: str) -> None:
    from mer_models.card import find_cards

    folder = tmp_path / "cards"
    folder.mkdir()
    for version in versions:
        # Later "created" stamps on the older versions: the version decides, not the date.
        stamp = f"2026-0{len(versions) - versions.index(version)}-01T00:00:00+00:00"
        card.model_copy(update={"version": version, "created": stamp}).save(
            folder / f"cldnn-{version}.json")
    assert ModelCard.load(find_cards(folder)["cldnn"]).version == newest
