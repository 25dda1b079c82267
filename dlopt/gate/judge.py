"""Judge one bench row (a variant on a backend) against its thresholds.

Maps each threshold of `dlopt.gate.config.Thresholds` to the measurement it constrains and to
the judgement it needs (`dlopt.gate.verdicts`): point estimates for accuracy, drift, size and
memory; the bootstrap interval of an interleaved ratio for speed and for regressions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlopt.gate.config import Thresholds
from dlopt.gate.verdicts import GateResult, Interval, judge
from dlopt.harness.statistics import independent_ratio_of_medians, paired_mean_interval

MB = 2**20


@dataclass(frozen=True)
class Rule:
    """How a threshold is judged: the direction, whether by the interval of a noisy ratio, and
    whether it compares with the FP32 reference (then it does not apply to the reference)."""

    at_least: bool
    by_interval: bool = False
    relative: bool = False


# To add a threshold: a field in `Thresholds`, a rule here, its measurement in `_measurements`.
RULES: dict[str, Rule] = {
    "accuracy_drop_max": Rule(at_least=False, relative=True),
    "relative_accuracy_min": Rule(at_least=True, relative=True),
    "cosine_min": Rule(at_least=True, relative=True),
    "top1_agreement_min": Rule(at_least=True, relative=True),
    "kl_max": Rule(at_least=False, relative=True),
    "latency_p50_ms_max": Rule(at_least=False),
    "latency_p99_ms_max": Rule(at_least=False),
    "speedup_min": Rule(at_least=True, by_interval=True, relative=True),
    "peak_memory_mb_max": Rule(at_least=False),
    "model_size_mb_max": Rule(at_least=False),
}
RELATIVE_GATES = tuple(gate for gate, rule in RULES.items() if rule.relative)
BASELINE_GATES = ("latency_regression_max_pct", "accuracy_regression_max")
Measurement = tuple["float | None", "Interval | None"]


def judge_row(
    variant: str,
    backend: str,
    row: Mapping[str, Any],
    thresholds: Thresholds,
    is_reference: bool,
    accuracy_drop: tuple[float, Interval] | None = None,
) -> list[GateResult]:
    """Every active threshold (except baseline ones) judged on this row.

    `accuracy_drop` is (reference accuracy - variant accuracy, its paired-bootstrap interval).
    """
    measurements = _measurements(row, accuracy_drop)
    results: list[GateResult] = []
    for gate, limit in thresholds.active().items():
        rule = RULES.get(gate)
        if rule is None or (is_reference and rule.relative):
            continue
        measured, interval = measurements[gate]
        results.append(
            judge(
                variant,
                backend,
                gate,
                measured,
                limit,
                rule.at_least,
                interval,
                rule.by_interval,
            )
        )
    return results


def _measurements(
    row: Mapping[str, Any], accuracy_drop: tuple[float, Interval] | None
) -> dict[str, Measurement]:
    """What each rule's threshold is compared with, from one bench row."""
    latency = row.get("latency") or {}
    drift = _worst_drift(row.get("drift"))
    accuracy = _metric(row, "accuracy")
    reference_accuracy = _metric_reference(row, "accuracy")
    relative = (
        accuracy / reference_accuracy if accuracy is not None and reference_accuracy else None
    )
    return {
        "accuracy_drop_max": accuracy_drop or (_difference(reference_accuracy, accuracy), None),
        "relative_accuracy_min": (relative, None),
        "cosine_min": (drift.get("cosine"), None),
        "top1_agreement_min": (drift.get("top1_agreement"), None),
        "kl_max": (drift.get("softmax_kl_divergence"), None),
        "latency_p50_ms_max": (latency.get("p50_ms"), None),
        "latency_p99_ms_max": (latency.get("p99_ms"), None),
        "speedup_min": speedup_of(row.get("latency_ratio_to_reference")),
        "peak_memory_mb_max": (_mb((row.get("memory") or {}).get("peak_rss_bytes")), None),
        "model_size_mb_max": (_mb(row.get("size_bytes")), None),
    }


def judge_against_baseline(
    variant: str,
    backend: str,
    row: Mapping[str, Any],
    baseline_row: Mapping[str, Any] | None,
    thresholds: Thresholds,
) -> list[GateResult]:
    """Regression gates against the same (variant, backend) row of a previous report."""
    results: list[GateResult] = []
    limit = thresholds.latency_regression_max_pct
    if limit is not None:
        ratio, interval = latency_ratio(row, baseline_row)
        gate = "latency_regression_max_pct"
        results.append(judge(variant, backend, gate, ratio, 1 + limit / 100, False, interval, True))
    limit = thresholds.accuracy_regression_max
    if limit is not None:
        now = _metric(row, "accuracy")
        then = _metric(baseline_row, "accuracy") if baseline_row else None
        gate = "accuracy_regression_max"
        results.append(judge(variant, backend, gate, _difference(then, now), limit, False))
    return results


def speedup_of(ratio: Mapping[str, Any] | None) -> tuple[float | None, Interval | None]:
    """Speedup (reference latency / variant latency) from the bench's latency ratio."""
    if not ratio or not ratio.get("median_ratio"):
        return None, None
    low, high = ratio["ci95"]
    if not low or not high:
        return 1 / ratio["median_ratio"], None
    return 1 / ratio["median_ratio"], Interval(1 / high, 1 / low)


def latency_ratio(
    row: Mapping[str, Any], baseline_row: Mapping[str, Any] | None
) -> tuple[float | None, Interval | None]:
    """Median latency now / then with a bootstrap interval (independent samples: two runs).

    Two runs cannot be interleaved, so their intervals are wider; that is what makes an
    honest regression gate inconclusive rather than failed when the machine merely drifted.
    """
    now = np.asarray((row.get("latency") or {}).get("samples_ns") or [], dtype=np.float64)
    if baseline_row is None:
        return None, None
    then = np.asarray((baseline_row.get("latency") or {}).get("samples_ns") or [], dtype=np.float64)
    if now.size < 2 or then.size < 2:
        return None, None
    point, (low, high) = independent_ratio_of_medians(now, then)
    return point, Interval(low, high)


def paired_accuracy_drop(
    reference_scores: np.ndarray, candidate_scores: np.ndarray, labels: np.ndarray
) -> tuple[float, Interval]:
    """Reference accuracy minus candidate accuracy, with a paired bootstrap over samples."""
    return paired_accuracy_drop_of(
        np.argmax(reference_scores, -1) == labels, np.argmax(candidate_scores, -1) == labels
    )


def paired_accuracy_drop_of(
    reference_correct: np.ndarray, candidate_correct: np.ndarray
) -> tuple[float, Interval]:
    """The same from per-sample correctness (True where the top-1 class is the label)."""
    difference = reference_correct.astype(np.float64) - candidate_correct.astype(np.float64)
    point, (low, high) = paired_mean_interval(difference)
    return point, Interval(low, high)


def _worst_drift(drift: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """The most-drifted output's figures (lowest cosine), or {} when there are none."""
    if not drift:
        return {}
    entries: list[Mapping[str, Any]] = list(drift.values())
    worst = min(entries, key=lambda entry: _finite(entry.get("cosine"), -math.inf))
    return dict(worst)


def _metric(row: Mapping[str, Any] | None, name: str) -> float | None:
    entry = ((row or {}).get("metrics") or {}).get(name) or {}
    return entry.get("value")


def _metric_reference(row: Mapping[str, Any], name: str) -> float | None:
    entry = (row.get("metrics") or {}).get(name) or {}
    return entry.get("reference")


def _difference(first: float | None, second: float | None) -> float | None:
    return None if first is None or second is None else first - second


def _mb(value: float | None) -> float | None:
    return None if value is None else value / MB


def _finite(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else default
