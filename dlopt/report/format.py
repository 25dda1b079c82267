"""Number and string formatting shared by the report renderers and the console tables."""

from __future__ import annotations

import math
from typing import Any

from dlopt.plain_text import markdown_cell


def fmt_number(value: Any) -> str:
    """4 significant digits; an em dash for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return cell(value)


def fmt_bounds(low: Any, high: Any) -> str:
    """`low–high` with as many digits as the interval needs and no more: two significant
    digits of its width (-0.008–0.017, 2.10–2.40, 12–15), so that it fits a narrow column."""
    numbers = [value for value in (low, high) if isinstance(value, (int, float))]
    if len(numbers) < 2 or not all(math.isfinite(value) for value in numbers):
        return f"{fmt_number(low)}–{fmt_number(high)}"
    width = abs(high - low)
    if width == 0 or max(abs(low), abs(high)) >= 1e6:
        return f"{low:.3g}–{high:.3g}"
    decimals = min(max(0, 1 - math.floor(math.log10(width))), 9)
    return f"{_fixed(low, decimals)}–{_fixed(high, decimals)}"


def fmt_interval(interval: Any) -> str:
    """`[low, high]` from a dict with low/high or a two-item list; empty when absent."""
    if not interval:
        return ""
    if isinstance(interval, dict):
        low, high = interval.get("low"), interval.get("high")
    else:
        low, high = interval
    return "[" + fmt_bounds(low, high).replace("–", ", ") + "]"


def cell(value: Any) -> str:
    """A string safe inside a Markdown table cell: no control characters, pipes, newlines or
    raw HTML."""
    return markdown_cell(value)


def _fixed(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text
