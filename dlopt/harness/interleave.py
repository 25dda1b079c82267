"""Speedups of several ready-to-run models over a reference, timed interleaved in this process.

For choosing between candidates while they are made (`dlopt quantize --mode auto`), where a
worker process per model (dlopt bench) would cost more than the choice. Each round runs every
model for `round_time_s` in a rotated order and keeps its median call time; a model's speedup
is the ratio of the reference's median round time to its own, with a paired bootstrap interval
over rounds (harness.statistics), so the machine's drift hits both sides of a ratio alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dlopt import progress
from dlopt.harness.statistics import paired_ratio_of_medians

WARMUP_CALLS = 3


@dataclass(frozen=True)
class Speedup:
    """Reference time over this model's time (2.0: twice as fast), 95% interval, rounds."""

    ratio: float
    low: float
    high: float
    rounds: int
    median_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.ratio:.2f}x [{self.low:.2f}, {self.high:.2f}]"


def interleaved_speedups(
    runs: Mapping[str, Callable[[], object]],
    reference: str,
    rounds: int = 12,
    round_time_s: float = 0.2,
    min_calls: int = 3,
) -> dict[str, Speedup]:
    """Speedup of every entry of `runs` (a call of one model on fixed inputs) over
    `runs[reference]`; the reference's own is 1 [1, 1]."""
    if reference not in runs:
        raise ValueError(f"reference {reference!r} is not among the runs")
    names = list(runs)
    for name in names:
        for _ in range(WARMUP_CALLS):
            runs[name]()
    medians: dict[str, list[float]] = {name: [] for name in names}
    with progress.step("timing against FP32, interleaved", rounds) as advance:
        for round_index in range(rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                medians[name].append(_median_call_ns(runs[name], round_time_s, min_calls))
            advance()
    reference_times = np.asarray(medians[reference])
    result = {}
    for name in names:
        ratio, (low, high) = paired_ratio_of_medians(reference_times, np.asarray(medians[name]))
        result[name] = Speedup(ratio, low, high, rounds, float(np.median(medians[name])) / 1e6)
    return result


def _median_call_ns(run: Callable[[], object], round_time_s: float, min_calls: int) -> float:
    calls: list[int] = []
    deadline = time.perf_counter_ns() + int(round_time_s * 1e9)
    while len(calls) < min_calls or time.perf_counter_ns() < deadline:
        start = time.perf_counter_ns()
        run()
        calls.append(time.perf_counter_ns() - start)
    return float(np.median(calls))
