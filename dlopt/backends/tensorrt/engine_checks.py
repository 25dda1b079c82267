"""Whether a serialized TensorRT engine may run on this machine: the TensorRT version and the
GPU that built it, against this one's. Pure logic: nothing here imports tensorrt or CUDA.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dlopt.errors import BackendError

MIN_TENSORRT_VERSION = (10, 12)


def parse_version(text: str) -> tuple[int, ...]:
    """`10.13.0.35` -> (10, 13, 0, 35); raises BackendError for text without a version."""
    numbers = re.findall(r"\d+", text.split("+")[0])
    if not numbers:
        raise BackendError(f"cannot read a TensorRT version from {text!r}")
    return tuple(int(n) for n in numbers)


@dataclass(frozen=True)
class GpuEnvironment:
    """What decides whether a serialized engine can run: TensorRT version and the GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    def to_dict(self) -> dict[str, str]:
        return {
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
        }


def engine_compatibility_problems(recorded: Mapping[str, Any], here: GpuEnvironment) -> list[str]:
    """Why an engine built in `recorded` (its manifest's `tensorrt` block) cannot run `here`.

    A plan is tied to the exact TensorRT version that built it (unless built
    version-compatible) and to the GPU's compute capability (unless built with a hardware
    compatibility level); a different GPU name with the same compute capability is allowed
    but slower tactics may have been chosen, so it is only refused when the capability differs.
    """
    problems: list[str] = []
    version = str(recorded.get("tensorrt_version") or "")
    if not version:
        problems.append("its manifest does not record the TensorRT version that built it")
    elif version != here.tensorrt_version and not recorded.get("version_compatible"):
        problems.append(
            f"it was built by TensorRT {version} and this is TensorRT {here.tensorrt_version}"
        )
    capability = str(recorded.get("compute_capability") or "")
    built_for = f"{recorded.get('gpu_name', 'an unknown GPU')} (sm {capability or '?'})"
    if not capability:
        problems.append("its manifest does not record the GPU it was built for")
    elif capability != here.compute_capability and not recorded.get("hardware_compatibility"):
        problems.append(
            f"it was built for {built_for} and this GPU is {here.gpu_name} "
            f"(sm {here.compute_capability})"
        )
    return problems


def check_engine_compatible(
    engine: str, recorded: Mapping[str, Any] | None, here: GpuEnvironment
) -> None:
    """Raise BackendError naming every reason `engine` cannot be loaded here."""
    if recorded is None:
        raise BackendError(
            f"{engine} has no dlopt manifest, so its TensorRT version and GPU are unknown",
            "build it with dlopt build --backend tensorrt, which records them",
        )
    problems = engine_compatibility_problems(recorded, here)
    if problems:
        raise BackendError(
            f"cannot load TensorRT engine {engine}: {'; '.join(problems)}",
            "rebuild it here from its ONNX with dlopt build --backend tensorrt",
        )
