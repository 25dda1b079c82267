"""Latency statistics: percentiles, bootstrap intervals, warm-up stability and warnings.

Timings are nanoseconds from `time.perf_counter_ns`. Intervals are percentile bootstraps with
a fixed seed, so a report is reproducible from its samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dlopt.harness.statistics import median_interval, paired_ratio_of_medians

# MLPerf asks for at least 662 queries to claim a p99; other percentiles need the same number
# of samples in their tail (n * (1 - p) >= 6.62).
TAIL_SAMPLES_NEEDED = 6.62
HIGH_CV = 0.10  # coefficient of variation above which the timings are called noisy


@dataclass(frozen=True)
class WarmupPolicy:
    """Warm up in windows until the window median moves less than `tolerance` (with caps)."""

    window_runs: int = 5
    tolerance: float = 0.05
    max_runs: int = 200
    max_seconds: float = 10.0


@dataclass(frozen=True)
class LatencyStats:
    """Summary of timed runs of one model (milliseconds per batch)."""

    runs: int
    batch_size: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    median_ci95_ms: tuple[float, float]
    cv: float
    throughput_items_per_s: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["median_ci95_ms"] = list(self.median_ci95_ms)
        return data


def summarize(samples_ns: Sequence[int], batch_size: int) -> LatencyStats:
    """Statistics of timed runs; raises ValueError when there are none."""
    if len(samples_ns) == 0:
        raise ValueError("no timed runs to summarize")
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    cv = std / mean if mean > 0 else 0.0
    return LatencyStats(
        runs=int(ms.size),
        batch_size=batch_size,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        mean_ms=mean,
        std_ms=std,
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
        median_ci95_ms=median_interval(ms),
        cv=cv,
        throughput_items_per_s=float(batch_size * ms.size / (ms.sum() / 1e3))
        if ms.sum() > 0
        else 0.0,
        warnings=latency_warnings(int(ms.size), cv),
    )


def runs_needed(percentile: float) -> int:
    """Timed runs needed to report a percentile (99 -> 662, as MLPerf asks)."""
    return math.ceil(TAIL_SAMPLES_NEEDED / (1 - percentile / 100) - 1e-9)


def latency_warnings(runs: int, cv: float) -> list[str]:
    warnings = []
    thin = [p for p in (90, 95, 99) if runs < runs_needed(p)]
    if thin:
        warnings.append(
            f"only {runs} timed runs: too few to back "
            + ", ".join(f"p{p} (needs {runs_needed(p)})" for p in thin)
        )
    if cv > HIGH_CV:
        warnings.append(f"noisy timings: coefficient of variation {cv:.0%} (> {HIGH_CV:.0%})")
    return warnings


@dataclass(frozen=True)
class Ratio:
    """Median of A over median of B, with a paired bootstrap interval."""

    median_ratio: float
    ci95: tuple[float, float]
    pairs: int

    def to_dict(self) -> dict[str, Any]:
        return {"median_ratio": self.median_ratio, "ci95": list(self.ci95), "pairs": self.pairs}


def ratio_of_medians(
    candidate_ns: Sequence[int], reference_ns: Sequence[int], confidence: float = 0.95
) -> Ratio:
    """Ratio of medians from interleaved runs; sample i of each was taken in the same round.

    The bootstrap resamples rounds (pairs), so drift of the machine over time, which hits both
    members of a round alike, stays paired.
    """
    pairs = min(len(candidate_ns), len(reference_ns))
    if pairs == 0:
        raise ValueError("no interleaved runs to compare")
    a = np.asarray(candidate_ns[:pairs], dtype=np.float64)
    b = np.asarray(reference_ns[:pairs], dtype=np.float64)
    point, interval = paired_ratio_of_medians(a, b, confidence)
    return Ratio(point, interval, pairs)


def warm_up(run_once: Callable[[], int], policy: WarmupPolicy) -> tuple[int, bool]:
    """Call `run_once` (returns ns) until two successive window medians agree within tolerance.

    Returns (runs made, stable?); not stable means a cap was hit first.
    """
    previous: float | None = None
    runs = 0
    spent_ns = 0
    while runs < policy.max_runs and spent_ns < policy.max_seconds * 1e9:
        window = [run_once() for _ in range(policy.window_runs)]
        runs += len(window)
        spent_ns += sum(window)
        median = float(np.median(window))
        if previous is not None and abs(median - previous) <= policy.tolerance * previous:
            return runs, True
        previous = median
    return runs, False
