"""Latency statistics: percentiles, bootstrap intervals, warnings and warm-up."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dlopt.harness.latency import (
    WarmupPolicy,
    ratio_of_medians,
    runs_needed,
    summarize,
    warm_up,
)
from dlopt.harness.statistics import median_interval


def test_summary_matches_numpy_and_converts_to_ms() -> None:
    samples_ns = list(range(1_000_000, 1_000_000 + 1000 * 1000, 1000))  # 1.000 .. 1.999 ms

    stats = summarize(samples_ns, batch_size=8)

    ms = np.asarray(samples_ns) / 1e6
    assert stats.p50_ms == pytest.approx(np.percentile(ms, 50))
    assert stats.p99_ms == pytest.approx(np.percentile(ms, 99))
    assert stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(1.999)
    assert stats.median_ci95_ms[0] <= stats.p50_ms <= stats.median_ci95_ms[1]
    assert stats.throughput_items_per_s == pytest.approx(8 / ms.mean() * 1e3)
    assert stats.runs == 1000
    assert stats.cv == pytest.approx(ms.std(ddof=1) / ms.mean())


def test_runs_needed_follows_mlperf_for_p99() -> None:
    assert runs_needed(99) == 662
    assert runs_needed(90) < runs_needed(95) < runs_needed(99)


def test_too_few_runs_and_high_cv_warn() -> None:
    rng = np.random.default_rng(0)
    noisy = (rng.lognormal(0, 0.5, 100) * 1e6).astype(int)

    warnings = summarize(list(noisy), 1).warnings

    assert any("too few to back" in w and "p99 (needs 662)" in w for w in warnings)
    assert any("coefficient of variation" in w for w in warnings)


def test_steady_timings_with_enough_runs_do_not_warn() -> None:
    samples = [1_000_000 + (i % 7) * 1000 for i in range(700)]

    assert summarize(samples, 1).warnings == []


def test_summarize_refuses_no_samples() -> None:
    with pytest.raises(ValueError):
        summarize([], 1)


def test_bootstrap_interval_narrows_with_more_samples() -> None:
    rng = np.random.default_rng(1)
    few = median_interval(rng.normal(10, 1, 30))
    many = median_interval(rng.normal(10, 1, 3000))

    assert few[0] < 10 < few[1]
    assert (many[1] - many[0]) < (few[1] - few[0])


def test_ratio_of_interleaved_medians_survives_drift() -> None:
    # The machine slows down 50% halfway; B is always 20% slower than A in the same round.
    drift = np.concatenate([np.ones(200), np.full(200, 1.5)])
    rng = np.random.default_rng(2)
    a = (drift * 1e6 * rng.normal(1, 0.02, 400)).astype(int)
    b = (drift * 1.2e6 * rng.normal(1, 0.02, 400)).astype(int)

    ratio = ratio_of_medians(list(b), list(a))

    assert ratio.ci95[0] <= 1.2 <= ratio.ci95[1]
    assert ratio.pairs == 400


def test_warm_up_stops_once_stable_and_at_the_cap() -> None:
    settling = itertools.chain([5_000_000, 4_000_000, 3_000_000], itertools.repeat(1_000_000))
    runs, stable = warm_up(lambda: next(settling), WarmupPolicy(window_runs=3, max_runs=100))
    assert stable and runs == 9

    alternating = itertools.cycle(
        [1_000_000, 1_000_000, 1_000_000, 3_000_000, 3_000_000, 3_000_000]
    )
    runs, stable = warm_up(lambda: next(alternating), WarmupPolicy(window_runs=3, max_runs=12))
    assert not stable and runs == 12
