"""One policy for numbers JSON cannot hold: NaN and infinities are written as null.

Every report, manifest and job file goes through `json_safe` (or `dumps`), so a reader meets one
convention: a measurement that is not a finite number is null (SQNR of identical outputs is
+inf; a failed metric is NaN), never the text "inf" or the non-standard `NaN` token.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def json_number(value: Any, digits: int | None = None) -> float | None:
    """`value` as a float, rounded to `digits` when given; None when missing or not finite."""
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    return round(number, digits) if digits is not None else number


def json_safe(value: Any) -> Any:
    """A copy of `value` that strict JSON can hold: non-finite floats become None, tuples
    lists, paths and unknown objects text, numpy scalars and arrays Python numbers and lists."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return json_number(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return json_safe(value.tolist())
    return str(value)


def dumps(value: Any, indent: int | None = 1) -> str:
    """Strict JSON text of `value` (through `json_safe`)."""
    return json.dumps(json_safe(value), indent=indent, allow_nan=False)
