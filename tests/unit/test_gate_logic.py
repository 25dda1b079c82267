"""Verdicts: fail closed, noise-aware intervals, and the exit code of a whole run."""

from __future__ import annotations

import math

import pytest

from dlopt.errors import ExitCode
from dlopt.gate.verdicts import (
    Interval,
    Verdict,
    exit_code,
    judge,
    overall_verdict,
    skipped,
)


@pytest.mark.parametrize("measured", [None, math.nan])
def test_missing_or_nan_measurements_fail_closed(measured: float | None) -> None:
    assert (
        judge("v", "ort", "latency_p50_ms_max", measured, 5.0, at_least=False).verdict
        is Verdict.FAIL
    )
    assert judge("v", "ort", "cosine_min", measured, 0.99, at_least=True).verdict is Verdict.FAIL
    result = judge("v", "ort", "speedup_min", measured, 1.5, True, Interval(1, 2), by_interval=True)
    assert result.verdict is Verdict.FAIL and "fails closed" in result.reason


def test_point_thresholds() -> None:
    assert judge("v", "b", "g", 4.0, 5.0, at_least=False).verdict is Verdict.PASS
    assert judge("v", "b", "g", 5.5, 5.0, at_least=False).verdict is Verdict.FAIL
    assert judge("v", "b", "g", 0.999, 0.995, at_least=True).verdict is Verdict.PASS
    assert judge("v", "b", "g", 0.99, 0.995, at_least=True).verdict is Verdict.FAIL


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (Interval(2.1, 2.6), Verdict.PASS),
        (Interval(1.2, 1.8), Verdict.FAIL),
        (Interval(1.8, 2.3), Verdict.INCONCLUSIVE),
    ],
)
def test_speedup_is_judged_by_its_whole_interval(interval: Interval, expected: Verdict) -> None:
    midpoint = (interval.low + interval.high) / 2

    result = judge("v", "b", "speedup_min", midpoint, 2.0, True, interval, by_interval=True)

    assert result.verdict is expected


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (Interval(0.95, 1.05), Verdict.PASS),
        (Interval(1.15, 1.30), Verdict.FAIL),
        (Interval(1.05, 1.15), Verdict.INCONCLUSIVE),
    ],
)
def test_latency_regression_ratio(interval: Interval, expected: Verdict) -> None:
    result = judge("v", "b", "latency_regression", 1.0, 1.10, False, interval, by_interval=True)

    assert result.verdict is expected


def test_overall_verdict_and_exit_codes() -> None:
    ok = judge("v", "b", "g", 1.0, 2.0, at_least=False)
    bad = judge("v", "b", "g", 3.0, 2.0, at_least=False)
    noisy = judge("v", "b", "g", 2.0, 2.0, True, Interval(1.9, 2.1), by_interval=True)
    skip = skipped("v", "tensorrt", "g", "optional backend unavailable: no CUDA device")

    assert overall_verdict([ok, skip]) is Verdict.PASS
    assert overall_verdict([ok, noisy]) is Verdict.INCONCLUSIVE
    assert overall_verdict([ok, noisy, bad]) is Verdict.FAIL
    assert overall_verdict([skip]) is Verdict.FAIL  # nothing judged is not a pass
    assert exit_code(Verdict.PASS) is ExitCode.OK
    assert exit_code(Verdict.FAIL) == 1 and exit_code(Verdict.INCONCLUSIVE) == 3
