"""Targets: the kinds of node a backend's jobs need (`[[targets]]` in the gate config).

A target names Ray resources (`CPU`, `GPU`, `memory` in bytes, or a custom resource a node
advertises, e.g. `avx512 = 1`) and the backends whose jobs run on a node that has them. A
backend listed by no target runs on any node, except where it needs a GPU by nature
(BACKEND_RESOURCES). The local executor runs everything on this machine and records the target.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dlopt.errors import ConfigError

DEFAULT_TARGET = "default"
# What a backend needs when no target names it: TensorRT only runs on an NVIDIA GPU.
BACKEND_RESOURCES: dict[str, dict[str, float]] = {"tensorrt": {"GPU": 1}}
RESOURCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,127}$")
TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


@dataclass(frozen=True)
class Target:
    """A name, the resources one task of this target takes, and the backends it runs."""

    name: str
    resources: Mapping[str, float] = field(default_factory=dict)
    backends: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"targets.{self.name}" if isinstance(self.name, str) else "targets"
        if not isinstance(self.name, str) or not TARGET_NAME.match(self.name):
            raise ConfigError(
                f"target name {self.name!r} is not a valid name",
                "use letters, digits, _ . - (up to 64 characters), starting with a letter or digit",
            )
        if not isinstance(self.resources, Mapping):
            raise ConfigError(
                f"{where}.resources = {self.resources!r} is not a table",
                "write it as resources = { GPU = 1, CPU = 4 }",
            )
        for key, value in self.resources.items():
            if not isinstance(key, str) or not RESOURCE_NAME.match(key):
                raise ConfigError(
                    f"{where}.resources has the key {key!r}, which is not a resource name",
                    "use CPU, GPU, memory or a custom resource name your Ray nodes advertise",
                )
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value <= 0:
                raise ConfigError(
                    f"{where}.resources.{key} = {value!r} is out of range",
                    "give a number > 0 (fractions such as 0.5 share a GPU)",
                )
        if not self.backends or not all(isinstance(b, str) for b in self.backends):
            raise ConfigError(
                f"{where}.backends = {list(self.backends)!r} is not a list of backend names",
                'list the backends whose jobs run there, e.g. backends = ["tensorrt"]',
            )

    def ray_options(self, default_cpus: float) -> dict[str, Any]:
        """Keyword arguments of a Ray task's `.options(...)`."""
        custom = {
            key: float(value)
            for key, value in self.resources.items()
            if key not in ("CPU", "GPU", "memory")
        }
        options: dict[str, Any] = {"num_cpus": float(self.resources.get("CPU", default_cpus))}
        if "GPU" in self.resources:
            options["num_gpus"] = float(self.resources["GPU"])
        if "memory" in self.resources:
            options["memory"] = float(self.resources["memory"])
        if custom:
            options["resources"] = custom
        return options

    def needs(self, default_cpus: float) -> dict[str, float]:
        """Every resource one task takes, named as Ray's nodes report them."""
        needs = {"CPU": float(default_cpus)}
        needs.update({key: float(value) for key, value in self.resources.items()})
        return needs


def check_targets(targets: Sequence[Target], backends: Sequence[str]) -> None:
    """Names unique, every listed backend benched, no backend in two targets."""
    seen: dict[str, str] = {}
    names = [target.name for target in targets]
    for name in names:
        if names.count(name) > 1 or name == DEFAULT_TARGET:
            raise ConfigError(
                f"target name {name!r} is used twice or is reserved",
                f"give each [[targets]] a unique name other than {DEFAULT_TARGET!r}",
            )
    for target in targets:
        for backend in target.backends:
            if backend not in backends:
                raise ConfigError(
                    f"targets.{target.name}.backends names {backend!r}, which is not in "
                    "bench.backends",
                    "a target's backends must also be listed in bench.backends",
                )
            if backend in seen:
                raise ConfigError(
                    f"backend {backend!r} is in targets {seen[backend]!r} and {target.name!r}",
                    "give each backend one target (use a second config to gate it elsewhere)",
                )
            seen[backend] = target.name


def target_for(backend: str, targets: Sequence[Target]) -> Target:
    """The target that lists `backend`, or the default one (BACKEND_RESOURCES)."""
    for target in targets:
        if backend in target.backends:
            return target
    return Target(DEFAULT_TARGET, dict(BACKEND_RESOURCES.get(backend, {})), (backend,))
