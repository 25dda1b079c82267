"""Every bootstrap dlopt computes, in one place: percentile intervals of a median, of a ratio
of medians (paired rounds or two independent runs) and of a mean of paired differences.

Resampling uses one fixed seed, so the same samples always give the same interval (reports are
reproducible and a rerun of `dlopt report` does not move a verdict).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
Interval = tuple[float, float]


def percentile_interval(estimates: np.ndarray, confidence: float = 0.95) -> Interval:
    """The central `confidence` part of bootstrap `estimates`."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)


def _resampled(
    size: int, statistic: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """`statistic` of BOOTSTRAP_RESAMPLES index resamples (rows) of range(size)."""
    return statistic(rng.integers(0, size, (BOOTSTRAP_RESAMPLES, size)))


def median_interval(values: np.ndarray, confidence: float = 0.95) -> Interval:
    """Percentile-bootstrap interval of the median of `values`."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return (float(values[0]), float(values[0])) if values.size else (math.nan, math.nan)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    medians = _resampled(values.size, lambda rows: np.median(values[rows], axis=1), rng)
    return percentile_interval(medians, confidence)


def paired_ratio_of_medians(
    candidate: np.ndarray, reference: np.ndarray, confidence: float = 0.95
) -> tuple[float, Interval]:
    """median(candidate) / median(reference) with an interval that resamples pairs (rounds of
    interleaved runs), so drift that hit both members of a round alike stays paired."""
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    point = float(np.median(a) / np.median(b))
    if a.size < 2:
        return point, (point, point)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    ratios = _resampled(
        a.size, lambda rows: np.median(a[rows], axis=1) / np.median(b[rows], axis=1), rng
    )
    return point, percentile_interval(ratios, confidence)


def independent_ratio_of_medians(
    now: np.ndarray, then: np.ndarray, confidence: float = 0.95
) -> tuple[float, Interval]:
    """median(now) / median(then) for two runs that could not be interleaved: each side is
    resampled on its own, so the interval is wider, as it should be."""
    a = np.asarray(now, dtype=np.float64)
    b = np.asarray(then, dtype=np.float64)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    medians_now = _resampled(a.size, lambda rows: np.median(a[rows], axis=1), rng)
    medians_then = _resampled(b.size, lambda rows: np.median(b[rows], axis=1), rng)
    point = float(np.median(a) / np.median(b))
    return point, percentile_interval(medians_now / medians_then, confidence)


def paired_mean_interval(
    differences: np.ndarray, confidence: float = 0.95
) -> tuple[float, Interval]:
    """The mean of per-sample paired differences with its bootstrap interval."""
    values = np.asarray(differences, dtype=np.float64)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = _resampled(values.size, lambda rows: values[rows].mean(axis=1), rng)
    return float(values.mean()), percentile_interval(means, confidence)
