"""What machine a group of jobs ran on: host, Ray node, CPU model and ISA flags, GPUs."""

from __future__ import annotations

import contextlib
import functools
import shutil
import socket
import subprocess
import sys
from typing import Any


def node_info() -> dict[str, Any]:
    """This machine, as a report row names it."""
    info: dict[str, Any] = {**_hardware()}
    ray = sys.modules.get("ray")  # only inside a Ray task: never import Ray for this
    if ray is not None and ray.is_initialized():
        with contextlib.suppress(Exception):
            info["ray_node_id"] = ray.get_runtime_context().get_node_id()
    return info


@functools.cache
def _hardware() -> dict[str, Any]:
    """Host name, CPU and GPUs: read once per process (the CPU's name may start `uname`)."""
    from dlopt.artifacts import cpu_info

    return {"hostname": socket.gethostname(), "cpu": cpu_info(), "gpus": gpus()}


def gpus() -> list[str]:
    """NVIDIA GPU names (NVML when installed, else nvidia-smi); empty without a GPU."""
    with contextlib.suppress(Exception):
        import pynvml

        pynvml.nvmlInit()
        try:
            names = []
            for index in range(pynvml.nvmlDeviceGetCount()):
                name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
                names.append(name.decode() if isinstance(name, bytes) else str(name))
            return names
        finally:
            pynvml.nvmlShutdown()
    if shutil.which("nvidia-smi") is None:
        return []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    return []
