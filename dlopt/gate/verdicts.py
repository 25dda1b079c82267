"""Thresholds to verdicts: pass, fail, inconclusive or skipped, each with its evidence.

Rules (DESIGN.md, "Measurement rules"):
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


def judge_at_most(
    variant: str,
    backend: str,
    gate: str,
    measured: float | None,
    limit: float,
    interval: Interval | None = None,
) -> GateResult:
    """Pass when measured <= limit (point estimate); fail closed when missing or NaN."""
    if _missing(measured):
        return GateResult(
            variant,
            backend,
            gate,
            Verdict.FAIL,
            None,
            limit,
            interval,
            "no measurement (missing, crashed or NaN): fails closed",
        )
    assert measured is not None
    verdict = Verdict.PASS if measured <= limit else Verdict.FAIL
    reason = "" if verdict is Verdict.PASS else f"{measured:.6g} > {limit:g}"
    return GateResult(variant, backend, gate, verdict, measured, limit, interval, reason)


def judge_at_least(
    variant: str,
    backend: str,
    gate: str,
    measured: float | None,
    limit: float,
    interval: Interval | None = None,
) -> GateResult:
    """Pass when measured >= limit (point estimate); fail closed when missing or NaN."""
    if _missing(measured):
        return GateResult(
            variant,
            backend,
            gate,
            Verdict.FAIL,
            None,
            limit,
            interval,
            "no measurement (missing, crashed or NaN): fails closed",
        )
    assert measured is not None
    verdict = Verdict.PASS if measured >= limit else Verdict.FAIL
    reason = "" if verdict is Verdict.PASS else f"{measured:.6g} < {limit:g}"
    return GateResult(variant, backend, gate, verdict, measured, limit, interval, reason)


def judge_interval_at_least(
    variant: str,
    backend: str,
    gate: str,
    measured: float | None,
    interval: Interval | None,
    limit: float,
) -> GateResult:
    """Noise-aware `>= limit`: by where the whole interval lies (e.g. speedup >= 2)."""
    if _missing(measured) or interval is None or _missing(interval.low) or _missing(interval.high):
        return GateResult(
            variant,
            backend,
            gate,
            Verdict.FAIL,
            None,
            limit,
            interval,
            "no measurement or interval (missing, crashed or NaN): fails closed",
        )
    if interval.low >= limit:
        return GateResult(variant, backend, gate, Verdict.PASS, measured, limit, interval)
    if interval.high < limit:
        return GateResult(
            variant,
            backend,
            gate,
            Verdict.FAIL,
            measured,
            limit,
            interval,
            f"whole interval [{interval.low:.4g}, {interval.high:.4g}] < {limit:g}",
        )
    return GateResult(
        variant,
        backend,
        gate,
        Verdict.INCONCLUSIVE,
        measured,
        limit,
        interval,
        f"interval [{interval.low:.4g}, {interval.high:.4g}] straddles {limit:g}: too noisy, rerun",
    )


def judge_interval_at_most(
    variant: str,
    backend: str,
    gate: str,
    measured: float | None,
    interval: Interval | None,
    limit: float,
) -> GateResult:
    """Noise-aware `<= limit`: by where the whole interval lies (e.g. latency ratio <= 1.1)."""
    if _missing(measured) or interval is None or _missing(interval.low) or _missing(interval.high):
        return GateResult(
            variant,
            backend,
            gate,
            Verdict.FAIL,
            None,
            limit,
            interval,
            "no measurement or interval (missing, crashed or NaN): fails closed",
        )
    if interval.high <= limit:
        return GateResult(variant, backend, gate, Verdict.PASS, measured, limit, interval)
    if interval.low > limit:
        return GateResult(
            variant,
            backend,
            gate,
            Verdict.FAIL,
            measured,
            limit,
            interval,
            f"whole interval [{interval.low:.4g}, {interval.high:.4g}] > {limit:g}",
        )
    return GateResult(
        variant,
        backend,
        gate,
        Verdict.INCONCLUSIVE,
        measured,
        limit,
        interval,
        f"interval [{interval.low:.4g}, {interval.high:.4g}] straddles {limit:g}: too noisy, rerun",
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
