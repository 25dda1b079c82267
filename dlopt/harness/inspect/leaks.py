"""Metadata that tells where and by whom a model was built: absolute paths (with user names)
and source code, e.g. the `pkg.torch.onnx.stack_trace` the dynamo ONNX exporter writes into
every node. Reported here, not removed (the exporter strips what it writes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# An absolute POSIX path of two or more parts, or a Windows drive path; not a URL's path.
ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[\w.+@-]+/)+[\w.+@-]+|\b[A-Za-z]:\\[^\s\"'<>]+")
SOURCE_MARKERS = ("stack_trace", "source", "traceback")
EXAMPLE_CHARS = 120


class LeakCollector:
    """Counts leaking strings by where they sit (`node metadata pkg.torch.onnx.stack_trace`)
    and keeps one example of each."""

    def __init__(self) -> None:
        self._found: dict[str, dict[str, Any]] = {}

    def scan(self, where: str, text: str) -> None:
        """Record `text` found at `where` when it holds a path or source code."""
        if not text:
            return
        path = ABSOLUTE_PATH.search(text)
        source = any(marker in where.lower() for marker in SOURCE_MARKERS) or 'File "' in text
        if path is None and not source:
            return
        kinds = [kind for kind, hit in (("absolute path", path), ("source code", source)) if hit]
        entry = self._found.setdefault(
            where,
            {
                "where": where,
                "kinds": kinds,
                "count": 0,
                "example": (path.group(0) if path else text.strip())[:EXAMPLE_CHARS],
            },
        )
        if path is not None and "absolute path" not in entry["kinds"]:
            entry["example"] = path.group(0)[:EXAMPLE_CHARS]  # a path says more than a line
        entry["count"] += 1
        entry["kinds"] = sorted(set(entry["kinds"]) | set(kinds))

    def scan_all(self, items: Iterable[tuple[str, str]]) -> None:
        for where, text in items:
            self.scan(where, text)

    def results(self) -> list[dict[str, Any]]:
        return sorted(self._found.values(), key=lambda entry: (-entry["count"], entry["where"]))
