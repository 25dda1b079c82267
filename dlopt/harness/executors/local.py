"""The local executor (the default): every group runs here, one after another, so that no two
groups' timed runs share the machine's cores."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dlopt.harness.executors.group import GroupJob, run_group


class LocalExecutor:
    name = "local"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def run(
        self,
        groups: Sequence[GroupJob],
        folder: Path,
        progress: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        return [run_group(group, folder, progress) for group in groups]
