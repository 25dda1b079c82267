"""Property tests of the drift metrics (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dlopt.harness.drift import cosine_similarity, drift, softmax_kl_divergence, top1_agreement

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
matrices = arrays(np.float32, st.tuples(st.integers(1, 16), st.integers(2, 8)), elements=finite)


@given(matrices)
def test_identical_tensors_have_cosine_one_and_infinite_sqnr(values: np.ndarray) -> None:
    result = drift(values, values.copy())

    assert result.max_abs_error == 0 and result.relative_l2_error == 0
    assert math.isinf(result.sqnr_db) and result.sqnr_db > 0
    assert (
        result.cosine == 1.0 or not values.any() or math.isclose(result.cosine, 1.0, rel_tol=1e-9)
    )
    assert top1_agreement(values, values) == 1.0
    assert softmax_kl_divergence(values, values) < 1e-9


@settings(max_examples=50)
@given(matrices, st.randoms(use_true_random=False))
def test_metrics_do_not_depend_on_batch_order(values: np.ndarray, random) -> None:
    noisy = values + np.float32(0.5)
    order = list(range(len(values)))
    random.shuffle(order)

    before = drift(noisy, values)
    after = drift(noisy[order], values[order])

    assert math.isclose(before.cosine, after.cosine, rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(before.mean_abs_error, after.mean_abs_error, rel_tol=1e-9, abs_tol=1e-12)
    assert before.max_abs_error == after.max_abs_error
    assert top1_agreement(noisy, values) == top1_agreement(noisy[order], values[order])
    assert math.isclose(
        softmax_kl_divergence(noisy, values),
        softmax_kl_divergence(noisy[order], values[order]),
        rel_tol=1e-9,
        abs_tol=1e-12,
    )


@given(matrices, st.floats(0.01, 100))
def test_cosine_ignores_positive_scale_and_is_bounded(values: np.ndarray, scale: float) -> None:
    other = values * np.float32(scale)

    value = cosine_similarity(other, values)

    assert -1.0 <= value <= 1.0
    if np.linalg.norm(values.astype(np.float64)) > 1e-3:
        assert math.isclose(value, 1.0, rel_tol=1e-6)
