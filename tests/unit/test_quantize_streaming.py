"""Quantize's memory stays bounded whatever the output size: the evaluation set keeps the FP32
outputs only while they are small, splits calls whose outputs are large, and drift is reduced
as it streams; the numbers are the same either way. Progress steps reach a sink only when one
is installed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dlopt import progress
from dlopt.data import Batch
from dlopt.harness import drift as drift_module
from dlopt.harness.drift import StreamingDrift, drift
from dlopt.optimize.quantize import evaluation as evaluation_module
from dlopt.optimize.quantize.budget import DriftBudget
from dlopt.optimize.quantize.evaluation import evaluation_set, measure_drift


class Batches(list):  # type: ignore[type-arg]
    description = "test data"


WEIGHTS = np.random.default_rng(0).standard_normal((6, 40)).astype(np.float32)


def reference(feed: Any) -> list[np.ndarray]:
    """A 'model' with two outputs: [N, 40] scores and [N, 3, 40] features."""
    scores = feed["x"] @ WEIGHTS
    return [scores, np.repeat(scores[:, None, :], 3, axis=1) * 0.5]


def noisy(feed: Any) -> list[np.ndarray]:
    """The reference plus an error that depends on each value alone (not on the batching)."""
    return [output + 0.3 * np.sin(7 * output) for output in reference(feed)]


def data(batches: int = 5, rows: int = 8) -> Batches:
    rng = np.random.default_rng(1)
    return Batches(
        Batch({"x": rng.standard_normal((rows, 6)).astype(np.float32)}, np.arange(rows) % 40)
        for _ in range(batches)
    )


def test_large_outputs_are_streamed_with_the_same_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    budgets = [DriftBudget("top1_agreement", 0.5)]
    kept = evaluation_set(data(), reference, ["logits", "features"])
    monkeypatch.setattr(evaluation_module, "MAX_CACHED_BYTES", 1000)
    monkeypatch.setattr(evaluation_module, "MAX_CALL_OUTPUT_BYTES", 1000)
    streamed = evaluation_set(data(), reference, ["logits", "features"])

    cached_drift = measure_drift(noisy, kept, budgets)
    streamed_drift = measure_drift(noisy, streamed, budgets)

    assert not kept.streamed and streamed.streamed
    assert streamed.rows_per_call is not None and streamed.rows_per_call < 8
    assert kept.samples == streamed.samples == 40 and kept.sha256 == streamed.sha256
    assert cached_drift.keys() == streamed_drift.keys()
    for key, value in cached_drift.items():
        assert streamed_drift[key] == pytest.approx(value, rel=1e-6), key  # float32 GEMMs by batch
    assert {"accuracy", "accuracy_drop", "top1_agreement"} <= set(cached_drift)


def test_streamed_evaluation_reruns_the_reference_and_keeps_float32_at_most(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []

    def counted(feed: Any) -> list[np.ndarray]:
        calls.append(1)
        return [output.astype(np.float64) for output in reference(feed)]

    monkeypatch.setattr(evaluation_module, "MAX_CACHED_BYTES", 1000)
    streamed = evaluation_set(data(), counted)
    first_pass = len(calls)
    chunks = list(streamed.chunks())

    assert len(calls) > first_pass  # measured again: nothing of the first pass was kept
    assert all(output.dtype == np.float32 for chunk in chunks for output in chunk.reference)


def test_the_head_for_ranking_is_bounded_by_its_output_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(evaluation_module, "MAX_CALL_OUTPUT_BYTES", 8 * 40 * 4 * 3)
    evaluation = evaluation_set(data(), reference)

    feeds, references = evaluation.head(32)

    assert sum(len(feed["x"]) for feed in feeds) == 24  # three rows' worth of bytes a chunk
    assert [len(r) for r in references] == [len(feed["x"]) for feed in feeds]


def test_streaming_drift_in_chunks_equals_drift_of_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(3)
    parts = [rng.standard_normal((5, 7)).astype(np.float32) for _ in range(4)]
    noisy_parts = [part + 0.1 * rng.standard_normal(part.shape) for part in parts]
    monkeypatch.setattr(drift_module, "CHUNK_ELEMENTS", 6)
    streaming = StreamingDrift()
    for candidate, expected in zip(noisy_parts, parts, strict=True):
        streaming.update(candidate, expected)

    whole = drift(np.concatenate(noisy_parts).astype(np.float64), np.concatenate(parts))

    for key, value in whole.to_dict().items():
        assert getattr(streaming.result(), key) == pytest.approx(value, rel=1e-12), key


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def start(self, description: str, total: int | None) -> str:
        self.events.append(("start", (description, total)))
        return description

    def advance(self, task: Any, amount: float) -> None:
        self.events.append(("advance", amount))

    def finish(self, task: Any) -> None:
        self.events.append(("finish", task))


def test_progress_steps_reach_an_installed_sink_and_nothing_else() -> None:
    sink = RecordingSink()
    with progress.step("outside", 3) as advance:
        advance(2)  # no sink: nothing happens, nothing fails
    with progress.reporting(sink):
        evaluation = evaluation_set(data(batches=2), reference)
        measure_drift(noisy, evaluation)

    starts = [event[1] for event in sink.events if event[0] == "start"]
    assert ("drift against FP32", 16) in starts
    advanced = sum(event[1] for event in sink.events if event[0] == "advance")
    assert advanced >= 16 + 16  # reference pass and drift, sample by sample
    assert [e[0] for e in sink.events].count("finish") == len(starts)


def test_the_cli_display_is_silent_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from dlopt.commands._progress import progress_display

    with progress_display("quantizing") as say:
        say("a status line")
        with progress.step("ORT calibration", 8) as advance:
            advance(8)

    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
