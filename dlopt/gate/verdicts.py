"""Thresholds to verdicts: pass, fail, inconclusive or skipped, each with its evidence.

Rules:
- gates fail closed: a missing, crashed, timed-out or NaN measurement fails its gate;
- speed and regression gates judge the bootstrap interval of a ratio of interleaved samples:
  pass when the whole interval is on the good side of the threshold, fail when it is wholly on
  the bad side, inconclusive when it straddles the threshold;
- accuracy gates judge the point estimate and report its paired-bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from dlopt.errors import ExitCode
from dlopt.jsonio import json_number


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Interval:
    """A 95% interval (low, high) around an estimate."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"interval low {self.low} > high {self.high}")


@dataclass(frozen=True)
class GateResult:
    """One gate for one (variant, backend): what was measured, the threshold and the verdict."""

    variant: str
    backend: str
    gate: str
    verdict: Verdict
    measured: float | None
    threshold: float | None
    interval: Interval | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict.value
        data["measured"] = json_number(self.measured)
        return data


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def judge(
    variant: str,
    backend: str,
    gate: str,
    measured: float | None,
    limit: float,
    at_least: bool,
    interval: Interval | None = None,
    by_interval: bool = False,
) -> GateResult:
    """`measured >= limit` (`at_least`) or `<= limit`, failing closed when missing or NaN.

    By default the point estimate is judged and `interval` only reported. `by_interval` judges
    noisy ratios by where their whole interval lies: pass when it is wholly on the good side,
    fail when wholly on the bad side, inconclusive when it straddles the limit.
    """

    def good(value: float) -> bool:
        return value >= limit if at_least else value <= limit

    bad_side = "<" if at_least else ">"
    no_interval = interval is None or _missing(interval.low) or _missing(interval.high)
    if _missing(measured) or (by_interval and no_interval):
        what = "no measurement or interval" if by_interval else "no measurement"
        return GateResult(
            variant,
            backend,
            gate,
            Verdict.FAIL,
            None,
            limit,
            interval,
            f"{what} (missing, crashed or NaN): fails closed",
        )
    assert measured is not None
    if not by_interval:
        verdict = Verdict.PASS if good(measured) else Verdict.FAIL
        reason = "" if verdict is Verdict.PASS else f"{measured:.6g} {bad_side} {limit:g}"
        return GateResult(variant, backend, gate, verdict, measured, limit, interval, reason)
    assert interval is not None
    worst, best = (interval.low, interval.high) if at_least else (interval.high, interval.low)
    span = f"[{interval.low:.4g}, {interval.high:.4g}]"
    if good(worst):
        return GateResult(variant, backend, gate, Verdict.PASS, measured, limit, interval)
    if not good(best):
        reason = f"whole interval {span} {bad_side} {limit:g}"
        return GateResult(variant, backend, gate, Verdict.FAIL, measured, limit, interval, reason)
    reason = f"interval {span} straddles {limit:g}: too noisy, rerun"
    return GateResult(
        variant, backend, gate, Verdict.INCONCLUSIVE, measured, limit, interval, reason
    )


def skipped(variant: str, backend: str, gate: str, reason: str) -> GateResult:
    """A gate not judged because an optional backend is unavailable here."""
    return GateResult(variant, backend, gate, Verdict.SKIPPED, None, None, None, reason)


def failed(variant: str, backend: str, gate: str, reason: str) -> GateResult:
    """A gate that fails closed for a reason other than a threshold (crash, unavailable)."""
    return GateResult(variant, backend, gate, Verdict.FAIL, None, None, None, reason)


def overall_verdict(results: Iterable[GateResult]) -> Verdict:
    """Fail beats inconclusive beats pass; all skipped (or none) is a failure: nothing judged."""
    verdicts = {result.verdict for result in results}
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.INCONCLUSIVE in verdicts:
        return Verdict.INCONCLUSIVE
    if Verdict.PASS in verdicts:
        return Verdict.PASS
    return Verdict.FAIL


def exit_code(verdict: Verdict) -> ExitCode:
    """The process exit code for an overall verdict."""
    return {
        Verdict.PASS: ExitCode.OK,
        Verdict.FAIL: ExitCode.GATE_FAILED,
        Verdict.INCONCLUSIVE: ExitCode.INCONCLUSIVE,
        Verdict.SKIPPED: ExitCode.GATE_FAILED,
    }[verdict]
