"""Parity check: the exported model must compute what the original computes, at several shapes.

Shapes: the example shape, and for each dynamic axis a smaller and a larger size, because an
export that baked a shape in (a traced `view`, a constant-folded size) only fails away from the
example shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dlopt.harness.drift import drift, within_tolerance
from dlopt.specs import TensorSpec, axis_names, random_feed

RunFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Tolerance:
    """Element-wise tolerance, numpy allclose style: |a - b| <= atol + rtol * |b|.

    With `scale_relative`, atol is a fraction of the output's scale (its largest magnitude,
    max |b|): reduced precision (FP16 weights and arithmetic) errs in proportion to the size of
    the values it computes with, so a logit near zero among logits of size 50 can be off by
    more than a fixed atol while the output as a whole is right to 1e-3 of its scale.
    """

    atol: float
    rtol: float
    scale_relative: bool = False

    def absolute_for(self, expected: np.ndarray) -> float:
        """The absolute tolerance for this output (atol, or atol x the output's scale)."""
        if not self.scale_relative or expected.size == 0:
            return self.atol
        scale = float(np.max(np.abs(expected)))
        return self.atol * scale if np.isfinite(scale) and scale > 0 else self.atol


# float32 exports differ from eager torch by reordered sums (~1e-6 relative); these defaults
# leave room for that on deep nets and still catch a wrong graph.
DEFAULT_TOLERANCES = {
    "float32": Tolerance(atol=1e-4, rtol=1e-3),
    "float64": Tolerance(atol=1e-6, rtol=1e-5),
    "float16": Tolerance(atol=1e-2, rtol=1e-2),
    "bfloat16": Tolerance(atol=5e-2, rtol=5e-2),
}


@dataclass
class ParityRow:
    """One output at one shape."""

    shapes: str
    output: str
    passed: bool
    max_abs_error: float
    relative_l2_error: float
    cosine: float
    atol: float
    rtol: float
    note: str = ""


@dataclass
class ParityReport:
    """Every output at every checked shape, plus the shapes that could not be checked."""

    rows: list[ParityRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row.passed for row in self.rows)

    def first_failure(self) -> ParityRow | None:
        return next((row for row in self.rows if not row.passed), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "rows": [asdict(row) for row in self.rows],
            "skipped": self.skipped,
        }


def parity_axis_sizes(specs: Sequence[TensorSpec]) -> list[dict[str, int]]:
    """The axis sizes to check: the example, then a smaller and a larger size per dynamic axis."""
    examples: dict[str, int] = {}
    for spec in specs:
        for dim in spec.dims:
            if dim.axis:
                examples.setdefault(dim.axis, dim.size)
    plans: list[dict[str, int]] = [{}]
    for axis in axis_names(specs):
        size = examples[axis]
        if size > 1:
            plans.append({axis: size // 2})
        plans.append({axis: size * 2})
        if size == 1:  # nothing smaller: check a second, odd size instead
            plans.append({axis: 3})
    return plans


def describe_shapes(specs: Sequence[TensorSpec], axis_sizes: Mapping[str, int]) -> str:
    return ", ".join(
        f"{spec.name}[{'x'.join(map(str, spec.shape_with(axis_sizes)))}]" for spec in specs
    )


def check_parity(
    reference: RunFn,
    candidate: RunFn,
    specs: Sequence[TensorSpec],
    tolerance: Tolerance | None = None,
    seed: int = 0,
) -> ParityReport:
    """Run both models on the same random, non-zero inputs at several shapes and compare.

    A shape at which the reference itself fails is skipped (and listed), since an export
    cannot be asked to work where the original does not. Every other difference, including a
    candidate that fails to run, is a failed row.
    """
    report = ParityReport()
    for plan_index, axis_sizes in enumerate(parity_axis_sizes(specs)):
        feed = random_feed(specs, axis_sizes, seed=seed + plan_index)
        shapes = describe_shapes(specs, axis_sizes)
        try:
            expected = reference(feed)
        except Exception as error:
            report.skipped.append(f"{shapes}: the original model fails here ({_short(error)})")
            continue
        try:
            actual = candidate(feed)
        except Exception as error:
            report.rows.append(_failure_row(shapes, "*", f"exported model failed: {_short(error)}"))
            continue
        for name, expected_value in expected.items():
            report.rows.append(_compare(shapes, name, actual.get(name), expected_value, tolerance))
    return report


def _compare(
    shapes: str,
    name: str,
    actual: np.ndarray | None,
    expected: np.ndarray,
    tolerance: Tolerance | None,
) -> ParityRow:
    if actual is None:
        return _failure_row(shapes, name, "the exported model has no such output")
    actual = np.asarray(actual)
    if actual.shape != expected.shape:
        return _failure_row(shapes, name, f"shape {actual.shape} instead of {expected.shape}")
    limits = tolerance or DEFAULT_TOLERANCES.get(str(expected.dtype), Tolerance(0.0, 0.0))
    measured = drift(actual, expected)
    finite = bool(np.isfinite(actual).all()) if actual.dtype.kind == "f" else True
    atol = limits.absolute_for(expected) if expected.dtype.kind == "f" else limits.atol
    passed = finite and within_tolerance(actual, expected, atol, limits.rtol)
    return ParityRow(
        shapes,
        name,
        passed,
        measured.max_abs_error,
        measured.relative_l2_error,
        measured.cosine,
        atol,
        limits.rtol,
        "" if finite else "non-finite values",
    )


def _failure_row(shapes: str, name: str, note: str) -> ParityRow:
    nan = float("nan")
    return ParityRow(shapes, name, False, nan, nan, nan, nan, nan, note)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:160] if text else ''}"
