"""The local executor (the default): every group runs here, one after another, so that no two
groups' timed runs share the machine's cores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dlopt.harness.executors.group import GroupJob, run_group
from dlopt.progress import step as progress_step


class LocalExecutor:
    """`model_key`: the key of encrypted artifacts, handed to each worker on its stdin."""

    name = "local"

    def __init__(self, model_key: bytes | None = None) -> None:
        self.model_key = model_key

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def run(
        self,
        groups: Sequence[GroupJob],
        folder: Path,
        progress: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        results = []
        with progress_step("benchmarking the backends", len(groups)) as advance:
            for group in groups:
                results.append(run_group(group, folder, progress, self.model_key))
                advance()
        return results
