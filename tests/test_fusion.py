"""mer_models.fusion.fuse: the one weighted mean used by the engine and by train/."""

from __future__ import annotations

import numpy as np
import pytest

from mer_models.errors import ParameterError
from mer_models.fusion import fuse

A = np.array([[0.7, 0.1, 0.1, 0.1], [0.4, 0.4, 0.1, 0.1]])
B = np.array([[0.1, 0.1, 0.1, 0.7]])  # a clip-level model: one row for every window


def test_weights_apply_to_their_own_model() -> None:
    fused = fuse([A, B], [0.8, 0.2])
    np.testing.assert_allclose(fused[0], [0.58, 0.1, 0.1, 0.22])
    np.testing.assert_allclose(fused[1], [0.34, 0.34, 0.1, 0.22])
    np.testing.assert_allclose(fuse([B, A], [0.2, 0.8]), fused)  # order of models is free
    assert not np.allclose(fuse([A, B], [0.2, 0.8]), fused)


def test_weights_need_not_sum_to_one_and_zero_means_equal() -> None:
    np.testing.assert_allclose(fuse([A, B], [4, 1]), fuse([A, B], [0.8, 0.2]))
    np.testing.assert_allclose(fuse([A, B], [0, 0]), (A + B) / 2)
    np.testing.assert_allclose(fuse([A], [0.3]), A)


@pytest.mark.parametrize(("parts", "weights", "match"), [
    ([], [], "at least one"),
    ([A, B], [1.0], "2 probability arrays but 1 weights"),
    ([A, B], [1.0, -0.5], ">= 0"),
    ([A, B], [1.0, float("nan")], "finite"),
])
def test_bad_arguments_are_refused(parts: list[np.ndarray], weights: list[float],
                                   match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        fuse(parts, weights)
