"""Drift and task metrics over the evaluation set, computed block by block, per shard, and merged
exactly.

A pair's outputs are read back from disk (`output_store`) in blocks of samples aligned to
absolute sample indices, so memory stays bounded however large the evaluation set is. Every
statistic is a count, a maximum, a confusion count, or a list of per-block float64 sums that is
finalised with `math.fsum` (exactly rounded, so the order of the blocks does not matter). Shards
whose boundaries are multiples of SHARD_ALIGN (as `plan_ranges` makes them) cut no block, so the
stats of shards merged are those of one pass, bit for bit.

The formulas are `dlopt.harness.drift`'s and `dlopt.harness.metrics`' (scikit-learn's for the
classification metrics, fed the merged confusion counts as sample weights). Summing by hand is
what streaming needs: scikit-learn and numpy have no mergeable accumulators for these.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlopt.harness.drift import Drift, _log_softmax
from dlopt.harness.metrics import (
    check_class_indices,
    class_predictions,
    classification_metrics,
    is_classifier_output,
    roc_auc,
    task_kind,
)
from dlopt.harness.output_store import StoredOutputs

SHARD_ALIGN = 4096  # shard boundaries are multiples of this (and of the batch size)
BLOCK_BYTES = 16 << 20  # at most this much of one output is read at once (or one sample)
ROC_AUC_MAX_SCORES = 1 << 25  # ROC-AUC needs every score at once: larger sets leave it out


def plan_ranges(count: int, shards: int, batch_size: int = 1) -> list[tuple[int, int]]:
    """[0, count) split into at most `shards` contiguous ranges of nearly equal size whose
    boundaries are multiples of SHARD_ALIGN and of `batch_size` (so no block and no batch is
    cut); fewer ranges when the set is too small to split that way."""
    unit = math.lcm(SHARD_ALIGN, max(1, batch_size))
    units = max(1, -(-count // unit))
    shards = max(1, min(shards, units))
    bounds = [min(count, (index * units // shards) * unit) for index in range(shards)] + [count]
    return [(low, high) for low, high in itertools.pairwise(bounds) if high > low]


def block_size(sample_bytes: int) -> int:
    """Samples per block: the largest power of two up to SHARD_ALIGN that keeps a block within
    BLOCK_BYTES. A power of two divides SHARD_ALIGN, so blocks never straddle shards."""
    size = SHARD_ALIGN
    while size > 1 and size * sample_bytes > BLOCK_BYTES:
        size //= 2
    return size


def blocks(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) cut at the multiples of `size` (absolute indices)."""
    edges = [start, *range((start // size + 1) * size, stop, size), stop]
    return [(low, high) for low, high in itertools.pairwise(edges) if high > low]


def exact_sum(values: list[float]) -> float:
    """The exactly rounded sum (order-independent); inf or NaN when the values hold them."""
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):  # inf - inf, or finite values summing past float64
        return float(np.sum(values))


def _max(first: float, second: float) -> float:
    return math.nan if math.isnan(first) or math.isnan(second) else max(first, second)


@dataclass
class DriftSums:
    """What `drift` (and top-1 agreement and KL for classifier outputs) needs, per block."""

    classifier: bool
    elements: int = 0
    max_abs_error: float = 0.0
    abs_error: list[float] = field(default_factory=list)
    noise: list[float] = field(default_factory=list)
    signal: list[float] = field(default_factory=list)
    candidate_power: list[float] = field(default_factory=list)
    dot: list[float] = field(default_factory=list)
    rows: int = 0
    top1_agree: int = 0
    kl: list[float] = field(default_factory=list)

    def add(self, candidate: np.ndarray, reference: np.ndarray) -> None:
        a = np.asarray(candidate, dtype=np.float64).ravel()
        b = np.asarray(reference, dtype=np.float64).ravel()
        error = a - b
        absolute = np.abs(error)
        self.elements += a.size
        if a.size:
            self.max_abs_error = _max(self.max_abs_error, float(absolute.max()))
        self.abs_error.append(float(absolute.sum()))
        self.noise.append(float(np.dot(error, error)))
        self.signal.append(float(np.dot(b, b)))
        self.candidate_power.append(float(np.dot(a, a)))
        self.dot.append(float(np.dot(a, b)))
        if self.classifier:
            self.rows += candidate.shape[0]
            same = np.argmax(candidate, axis=-1) == np.argmax(reference, axis=-1)
            self.top1_agree += int(same.sum())
            log_p = _log_softmax(np.asarray(reference, dtype=np.float64))
            log_q = _log_softmax(np.asarray(candidate, dtype=np.float64))
            self.kl.append(float((np.exp(log_p) * (log_p - log_q)).sum()))

    def merged(self, other: DriftSums) -> DriftSums:
        return DriftSums(
            self.classifier,
            self.elements + other.elements,
            _max(self.max_abs_error, other.max_abs_error),
            self.abs_error + other.abs_error,
            self.noise + other.noise,
            self.signal + other.signal,
            self.candidate_power + other.candidate_power,
            self.dot + other.dot,
            self.rows + other.rows,
            self.top1_agree + other.top1_agree,
            self.kl + other.kl,
        )

    def result(self) -> dict[str, Any]:
        """The figures `drift()` gives on the whole arrays (plus the classifier ones)."""
        entry = self._drift().to_dict()
        if self.classifier:
            entry["top1_agreement"] = self.top1_agree / self.rows if self.rows else 1.0
            entry["softmax_kl_divergence"] = (
                max(exact_sum(self.kl) / self.rows, 0.0) if self.rows else 0.0
            )
        return entry

    def _drift(self) -> Drift:
        if self.elements == 0:
            return Drift(0.0, 0.0, 0.0, 1.0, math.inf)
        noise, signal = exact_sum(self.noise), exact_sum(self.signal)
        candidate_power, dot = exact_sum(self.candidate_power), exact_sum(self.dot)
        norms = math.sqrt(candidate_power) * math.sqrt(signal)
        if norms == 0:
            cosine = 1.0 if candidate_power == 0 and signal == 0 else 0.0
        else:
            cosine = float(np.clip(dot / norms, -1.0, 1.0))
        root_noise, root_signal = math.sqrt(noise), math.sqrt(signal)
        if root_signal == 0:
            relative = 0.0 if root_noise == 0 else math.inf
        else:
            relative = root_noise / root_signal
        if noise == 0:
            sqnr = math.inf
        else:
            sqnr = 10 * math.log10(signal / noise) if signal > 0 else -math.inf
        return Drift(
            max_abs_error=self.max_abs_error,
            mean_abs_error=exact_sum(self.abs_error) / self.elements,
            relative_l2_error=relative,
            cosine=cosine,
            sqnr_db=sqnr,
        )


@dataclass
class TaskSums:
    """What the task metrics need: confusion counts (and the probabilities for ROC-AUC) for a
    classification, per-column sums of absolute and squared errors for a regression."""

    kind: str
    samples: int = 0
    confusion: Counter[tuple[int, int]] = field(default_factory=Counter)
    probabilities: list[np.ndarray] | None = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    abs_error: list[np.ndarray] = field(default_factory=list)
    squared_error: list[np.ndarray] = field(default_factory=list)

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        scores = np.asarray(scores, dtype=np.float64)
        self.samples += scores.shape[0]
        if self.kind == "classification":
            check_class_indices(labels)
            flat_labels = labels.astype(np.int64).reshape(-1)
            probabilities, predicted = class_predictions(scores)
            pairs, counts = np.unique(
                np.stack([flat_labels, predicted.astype(np.int64)]), axis=1, return_counts=True
            )
            for (label, prediction), count in zip(pairs.T.tolist(), counts.tolist(), strict=True):
                self.confusion[(label, prediction)] += count
            if self.probabilities is not None:
                self.probabilities.append(probabilities)
                self.labels.append(flat_labels)
            return
        predicted = scores.reshape(scores.shape[0], -1)
        target = labels.astype(np.float64).reshape(labels.shape[0], -1)
        if predicted.shape != target.shape:
            raise ValueError(f"predictions {scores.shape} do not match labels {labels.shape}")
        error = predicted - target
        self.abs_error.append(np.abs(error).sum(axis=0))
        self.squared_error.append((error * error).sum(axis=0))

    def merged(self, other: TaskSums) -> TaskSums:
        probabilities = (
            None
            if self.probabilities is None or other.probabilities is None
            else self.probabilities + other.probabilities
        )
        return TaskSums(
            self.kind,
            self.samples + other.samples,
            self.confusion + other.confusion,
            probabilities,
            self.labels + other.labels,
            self.abs_error + other.abs_error,
            self.squared_error + other.squared_error,
        )

    def result(self) -> dict[str, float]:
        if self.kind == "classification":
            cells = sorted(self.confusion.items())
            labels = np.array([label for (label, _), _ in cells], dtype=np.int64)
            predicted = np.array([prediction for (_, prediction), _ in cells], dtype=np.int64)
            counts = np.array([count for _, count in cells], dtype=np.float64)
            result = classification_metrics(labels, predicted, counts)
            result["roc_auc"] = (
                roc_auc(np.concatenate(self.probabilities), np.concatenate(self.labels))
                if self.probabilities
                else math.nan
            )
            return result
        columns = len(self.abs_error[0]) if self.abs_error else 0
        mean_abs = [
            exact_sum([b[i] for b in self.abs_error]) / self.samples for i in range(columns)
        ]
        mean_sq = [
            exact_sum([b[i] for b in self.squared_error]) / self.samples for i in range(columns)
        ]
        return {"mae": float(np.mean(mean_abs)), "rmse": math.sqrt(float(np.mean(mean_sq)))}


@dataclass
class EvaluationStats:
    """Drift of each output against the reference, and task metrics of the prediction output
    (the candidate's and the reference's), over some samples."""

    drift: dict[str, DriftSums]
    task: TaskSums | None = None
    reference_task: TaskSums | None = None

    def merged(self, other: EvaluationStats) -> EvaluationStats:
        return EvaluationStats(
            {name: sums.merged(other.drift[name]) for name, sums in self.drift.items()},
            _merge_task(self.task, other.task),
            _merge_task(self.reference_task, other.reference_task),
        )


def _merge_task(first: TaskSums | None, second: TaskSums | None) -> TaskSums | None:
    return None if first is None or second is None else first.merged(second)


@dataclass
class Plan:
    """What to compare, decided once for the whole set (so every shard does the same)."""

    drift_outputs: list[str]  # outputs present in both with the same per-sample shape
    classifier: dict[str, bool]
    prediction: str | None = None
    kind: str | None = None
    reference_has_prediction: bool = False
    keep_probabilities: bool = True


def evaluate(
    candidate: StoredOutputs, reference: StoredOutputs | None, plan: Plan
) -> EvaluationStats:
    """The stats of every shard (each part of the candidate's outputs), merged."""
    stats = [evaluate_range(candidate, reference, plan, p.start, p.stop) for p in candidate.parts]
    merged = stats[0]
    for more in stats[1:]:
        merged = merged.merged(more)
    return merged


def evaluate_range(
    candidate: StoredOutputs,
    reference: StoredOutputs | None,
    plan: Plan,
    start: int,
    stop: int,
) -> EvaluationStats:
    """Stats over samples [start, stop), read block by block."""
    stats = EvaluationStats({name: DriftSums(plan.classifier[name]) for name in plan.drift_outputs})
    for name in plan.drift_outputs:
        assert reference is not None
        for low, high in blocks(start, stop, _block(candidate, name)):
            stats.drift[name].add(candidate.read(name, low, high), reference.read(name, low, high))
    if plan.prediction is not None and plan.kind is not None:
        keep: list[np.ndarray] | None = [] if plan.keep_probabilities else None
        stats.task = TaskSums(plan.kind, probabilities=keep)
        if plan.reference_has_prediction:
            keep_reference: list[np.ndarray] | None = [] if plan.keep_probabilities else None
            stats.reference_task = TaskSums(plan.kind, probabilities=keep_reference)
        for low, high in blocks(start, stop, _block(candidate, plan.prediction)):
            labels = candidate.read_labels(low, high)
            stats.task.add(candidate.read(plan.prediction, low, high), labels)
            if stats.reference_task is not None and reference is not None:
                stats.reference_task.add(reference.read(plan.prediction, low, high), labels)
    return stats


def _block(outputs: StoredOutputs, name: str) -> int:
    sample_bytes = int(np.prod(outputs.sample_shape(name), dtype=np.int64)) * 8  # as float64
    return block_size(max(1, sample_bytes))


def task_kind_of(outputs: StoredOutputs, prediction: str, task: str) -> str:
    """`task`, or for auto the kind `task_kind` infers from the whole set's labels (streamed):
    the set is a classification when every block of it is one."""
    if task != "auto":
        return task
    probe = outputs.read(prediction, outputs.start, outputs.start + 1)
    for low, high in blocks(outputs.start, outputs.stop, SHARD_ALIGN):
        if task_kind(probe, outputs.read_labels(low, high)) == "regression":
            return "regression"
    return "classification"


def scores_count(outputs: StoredOutputs, name: str) -> int:
    return outputs.count * int(np.prod(outputs.sample_shape(name), dtype=np.int64))


def top1_correct(outputs: StoredOutputs, name: str) -> np.ndarray:
    """Per sample, whether the arg-max of output `name` is the label (read block by block)."""
    correct = np.empty(outputs.count, dtype=bool)
    for low, high in blocks(outputs.start, outputs.stop, _block(outputs, name)):
        scores = outputs.read(name, low, high)
        labels = outputs.read_labels(low, high).reshape(-1)
        correct[low - outputs.start : high - outputs.start] = np.argmax(scores, -1) == labels
    return correct


def is_classifier(outputs: StoredOutputs, name: str) -> bool:
    probe = outputs.read(name, outputs.start, outputs.start + 1)
    return is_classifier_output(probe)
