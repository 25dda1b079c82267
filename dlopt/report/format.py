"""Number and string formatting shared by the report renderers."""

from __future__ import annotations

import math
from typing import Any


def fmt_number(value: Any) -> str:
    """4 significant digits; an em dash for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return cell(value)


def fmt_interval(interval: Any) -> str:
    """`[low, high]` from a dict with low/high or a two-item list; empty when absent."""
    if not interval:
        return ""
    if isinstance(interval, dict):
        low, high = interval.get("low"), interval.get("high")
    else:
        low, high = interval
    return f"[{fmt_number(low)}, {fmt_number(high)}]"


def cell(value: Any) -> str:
    """A string safe inside a Markdown table cell: no pipes, no newlines, no raw HTML."""
    text = str(value)
    for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        text = text.replace(raw, safe)
    return " ".join(text.split())
