"""Drift and task metrics computed per shard of the evaluation set and merged equal one pass:
bit for bit against the same statistics over one part, and within float64 rounding against the
whole-array functions (`drift`, scikit-learn's metrics) that bench used before streaming."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from dlopt.harness.compare import compare_row
from dlopt.harness.drift import drift, softmax_kl_divergence, top1_agreement
from dlopt.harness.evaluation_stats import SHARD_ALIGN, block_size, blocks, plan_ranges
from dlopt.harness.metrics import task_metrics
from dlopt.harness.output_store import open_outputs, write_index, write_part
from dlopt.harness.results import BenchRow

SAMPLES = 2 * SHARD_ALIGN + 1234  # three shards, the last one short


def _store(folder: Path, arrays: dict[str, np.ndarray], labels: np.ndarray, shards: int) -> str:
    """The arrays written as one part per shard of `plan_ranges`; the index's path."""
    parts = []
    for index, (start, stop) in enumerate(plan_ranges(len(labels), shards)):
        piece = {name: value[start:stop] for name, value in arrays.items()}
        parts.append(write_part(folder / f"part{index}", piece, labels[start:stop], start))
    return str(write_index(folder / "pair.outputs.json", parts))


def _compared(tmp_path: Path, candidate: dict, reference: dict, labels: np.ndarray, shards: int):
    row = BenchRow("candidate", "onnxruntime", "ok")
    compare_row(
        row,
        open_outputs(_store(tmp_path / f"c{shards}", candidate, labels, shards)),
        open_outputs(_store(tmp_path / f"r{shards}", reference, labels, shards)),
        "reference",
        "auto",
    )
    return row


@pytest.fixture(scope="module")
def classifier() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(7)
    reference = rng.standard_normal((SAMPLES, 10)).astype(np.float32)
    candidate = reference + 0.3 * rng.standard_normal((SAMPLES, 10)).astype(np.float32)
    embedding = rng.standard_normal((SAMPLES, 3, 5)).astype(np.float32)
    labels = rng.integers(0, 10, SAMPLES)
    return (
        {"logits": candidate, "embedding": embedding * 1.01},
        {"logits": reference, "embedding": embedding},
        labels,
    )


def test_plan_ranges_cover_the_set_at_aligned_boundaries() -> None:
    ranges = plan_ranges(SAMPLES, 3, batch_size=32)

    assert ranges[0][0] == 0 and ranges[-1][1] == SAMPLES and len(ranges) == 3
    assert all(high == low for (_, high), (low, _) in itertools.pairwise(ranges))
    assert all(start % SHARD_ALIGN == 0 and start % 32 == 0 for start, _ in ranges)
    assert plan_ranges(100, 8) == [(0, 100)]  # too small to split without cutting a block
    uneven = plan_ranges(5 * 3 * SHARD_ALIGN, 3, batch_size=3)
    assert len(uneven) == 3 and all(start % (3 * SHARD_ALIGN) == 0 for start, _ in uneven)


def test_blocks_are_aligned_and_bounded() -> None:
    assert blocks(4096, 9000, 4096) == [(4096, 8192), (8192, 9000)]
    assert blocks(10, 20, 8) == [(10, 16), (16, 20)]
    assert block_size(8) == SHARD_ALIGN
    assert block_size(64 << 20) == 1  # one huge sample per block
    assert SHARD_ALIGN % block_size(12345) == 0


def test_sharded_drift_and_metrics_equal_one_pass_bit_for_bit(tmp_path: Path, classifier) -> None:
    candidate, reference, labels = classifier

    one = _compared(tmp_path, candidate, reference, labels, shards=1)
    merged = _compared(tmp_path, candidate, reference, labels, shards=3)

    assert len(open_outputs(tmp_path / "c3" / "pair.outputs.json").parts) == 3
    assert merged.drift == one.drift
    assert merged.metrics == one.metrics
    assert merged.metrics_output == one.metrics_output == "logits"


def test_merged_figures_match_the_whole_array_functions(tmp_path: Path, classifier) -> None:
    candidate, reference, labels = classifier

    row = _compared(tmp_path, candidate, reference, labels, shards=3)

    for name in ("logits", "embedding"):
        expected = drift(candidate[name], reference[name]).to_dict()
        for key, value in expected.items():
            assert row.drift[name][key] == pytest.approx(value, rel=1e-12), (name, key)
    logits = row.drift["logits"]
    assert logits["top1_agreement"] == top1_agreement(candidate["logits"], reference["logits"])
    assert logits["softmax_kl_divergence"] == pytest.approx(
        softmax_kl_divergence(candidate["logits"], reference["logits"]), rel=1e-12
    )
    assert "top1_agreement" not in row.drift["embedding"]  # not a classifier output
    expected_metrics = task_metrics(candidate["logits"], labels)
    reference_metrics = task_metrics(reference["logits"], labels)
    for name, value in expected_metrics.items():
        assert row.metrics[name]["value"] == value, name  # counts: exact, not just close
        assert row.metrics[name]["reference"] == reference_metrics[name], name


def test_regression_metrics_merge(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    target = rng.standard_normal((SAMPLES, 2))
    predicted = {"output": (target + 0.1 * rng.standard_normal((SAMPLES, 2))).astype(np.float32)}
    base = {"output": target.astype(np.float32)}

    one = _compared(tmp_path, predicted, base, target, shards=1)
    merged = _compared(tmp_path, predicted, base, target, shards=3)

    assert merged.metrics == one.metrics
    expected = task_metrics(predicted["output"], target)
    assert merged.metrics["mae"]["value"] == pytest.approx(expected["mae"], rel=1e-12)
    assert merged.metrics["rmse"]["value"] == pytest.approx(expected["rmse"], rel=1e-12)


def test_nan_outputs_propagate_like_one_pass(tmp_path: Path, classifier) -> None:
    candidate, reference, labels = classifier
    broken = {name: value.copy() for name, value in candidate.items()}
    broken["logits"][SAMPLES - 5, 3] = np.nan  # in the last shard only

    row = _compared(tmp_path, broken, reference, labels, shards=3)

    assert np.isnan(row.drift["logits"]["max_abs_error"])
    assert np.isnan(row.drift["logits"]["cosine"])
    assert not np.isnan(row.drift["embedding"]["cosine"])


def test_labels_that_do_not_fit_the_task_warn_and_keep_the_drift(tmp_path: Path) -> None:
    scores = {"output": np.ones((8, 2), dtype=np.float32)}
    labels = np.array([0.5, 1, 0, 1, 0, 1, 0, 1])  # not class indices
    row = BenchRow("m", "onnxruntime", "ok")
    stored = open_outputs(write_part(tmp_path / "p", scores, labels))
    compare_row(row, stored, stored, "m", "classification")

    assert row.metrics is None
    assert row.drift is not None and row.drift["output"]["cosine"] == 1.0
    assert any("not class indices" in warning for warning in row.warnings)
