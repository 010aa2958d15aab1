"""onnxruntime sessions as the engine opens them: shared per file and hash, no spinning."""

from __future__ import annotations

from mer_models.card import ModelCard, sha256_file
from mer_models.engine import DEFAULT_MODELS_DIR
from mer_models.onnx import load_session


def test_sessions_are_shared_and_their_threads_do_not_spin() -> None:
    card_path = next(DEFAULT_MODELS_DIR.glob("mood-4q-cldnn-*.json"))
    card = ModelCard.load(card_path)
    artifact = card.artifact_path(card_path)
    assert sha256_file(artifact) == card.sha256

    two = load_session(artifact, card.sha256, threads=2, prefer_gpu=False)
    assert load_session(artifact, card.sha256, threads=2, prefer_gpu=False) is two
    assert load_session(artifact, card.sha256, threads=1, prefer_gpu=False) is not two
    options = two.get_session_options()
    assert options.intra_op_num_threads == 2
    # Spinning intra-op threads kept the second core busy after every run, slowing the
    # feature extraction between model calls by half (docs/BENCHMARKS.md).
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
