"""The pure logic of `dlopt diff`: streaming statistics and where the error is added."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dlopt.harness.drift import Drift, StreamingDrift, drift
from dlopt.harness.layerdiff.graph import GraphView, Layer
from dlopt.harness.layerdiff.match import match_layers
from dlopt.harness.layerdiff.ranking import first_beyond, layer_results, most_added

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=50)
@given(
    arrays(np.float32, st.tuples(st.integers(2, 12), st.integers(1, 6)), elements=finite),
    st.integers(1, 5),
)
def test_streaming_over_batches_equals_drift_of_the_whole(values: np.ndarray, chunks: int) -> None:
    noisy = values * np.float32(1.01) + np.float32(0.25)
    streaming = StreamingDrift()
    for part_noisy, part_values in zip(
        np.array_split(noisy, chunks), np.array_split(values, chunks), strict=True
    ):
        streaming.update(part_noisy, part_values)

    whole = drift(noisy, values)
    result = streaming.result()

    for name in ("max_abs_error", "mean_abs_error", "relative_l2_error", "cosine", "sqnr_db"):
        assert math.isclose(
            getattr(result, name), getattr(whole, name), rel_tol=1e-9, abs_tol=1e-12
        )


def test_a_nan_in_the_candidate_makes_every_figure_nan() -> None:
    streaming = StreamingDrift()
    streaming.update(np.array([1.0, np.nan]), np.array([1.0, 2.0]))

    assert all(math.isnan(value) for value in streaming.result().to_dict().values())


def _view(quantized: dict[str, str] | None = None) -> GraphView:
    """x -> a(A) -> b(B) -> c(C), B also reading x."""
    layers = [
        Layer("A", "MatMul", ("x",), ("a",)),
        Layer("B", "Add", ("a", "x"), ("b",)),
        Layer("C", "Softmax", ("b",), ("c",)),
    ]
    names = {"a", "b", "c"}
    return GraphView("onnx", layers, {"x"}, dict(quantized or {}), {n: n for n in names})


def _drift(sqnr_db: float) -> Drift:
    relative = 10 ** (-sqnr_db / 20)
    return Drift(0.0, 0.0, relative, 1 - relative**2 / 2, sqnr_db)


def test_the_layer_that_adds_error_ranks_first_and_names_its_quantized_input() -> None:
    reference, candidate = _view(), _view({"b": "b_DequantizeLinear_Output"})
    matches = match_layers(reference, candidate)
    drifts = {"a": _drift(45.0), "b": _drift(50.0), "c": _drift(3.0)}

    results = layer_results(reference, candidate, matches, drifts, {})

    assert [r.layer for r in results] == ["A", "B", "C"]
    worst = most_added(results, top=5)
    assert worst[0].layer == "C"
    assert worst[0].input_sqnr_db == 50.0 and worst[0].quantized_inputs[0]["layer"] == "B"
    assert worst[0].keep_float == ["B", "C"]
    assert [r.layer for r in worst] == ["C", "A"]  # B improves on its worst input: not listed
    assert matches[1].candidate_output == "b_DequantizeLinear_Output"


def test_first_beyond_tolerance_is_in_graph_order_and_nan_counts() -> None:
    reference = _view()
    results = layer_results(
        reference,
        reference,
        match_layers(reference, reference),
        {"a": _drift(60.0), "b": Drift(*(math.nan,) * 5), "c": _drift(1.0)},
        {},
    )

    assert first_beyond(results, 0.99).layer == "B"
    assert first_beyond(results[:1], 0.99) is None


def test_unmatched_layers_pass_their_inputs_error_on() -> None:
    reference = _view()
    candidate = GraphView("onnx", [Layer("C", "Softmax", ("b",), ("c",))], {"x"}, {}, {"c": "c"})

    results = layer_results(
        reference, candidate, match_layers(reference, candidate), {"c": _drift(20.0)}, {}
    )

    assert [r.layer for r in results] == ["C"]
    assert results[0].input_sqnr_db == 100.0  # nothing measured upstream: taken as exact
