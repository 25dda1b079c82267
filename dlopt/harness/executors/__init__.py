"""Where bench jobs run: here (`local`, the default) or on a Ray cluster (`ray`).

A bench is cut into groups, one per (backend, target): every model measured on that backend
(`group.GroupJob`). An executor runs each group's jobs as worker processes on a machine that
fits the group (`targets.Target`) and returns each group's result as plain data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from dlopt.errors import ConfigError
from dlopt.harness.executors.group import GroupJob

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    name: str

    def describe(self) -> dict[str, Any]: ...

    def run(
        self,
        groups: Sequence[GroupJob],
        folder: Path,
        progress: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]: ...


def make_executor(name: str, address: str | None = None, stage_uri: str | None = None) -> Executor:
    """An executor by name; ConfigError for an unknown name, options that do not apply, or a
    missing extra (`dlopt[ray]`)."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}", f"use one of {', '.join(EXECUTORS)}")
    if name == "local":
        if address or stage_uri:
            raise ConfigError(
                "--ray-address and --stage-uri apply to --executor ray only",
                "add --executor ray, or drop them",
            )
        from dlopt.harness.executors.local import LocalExecutor

        return LocalExecutor()
    from dlopt.harness.executors.ray_executor import RayExecutor

    return RayExecutor(address, stage_uri)
