"""GPU tests run only where an NVIDIA GPU and TensorRT are present (dlopt[tensorrt])."""

from __future__ import annotations

import importlib.util
import shutil

import pytest


def _why_no_gpu() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU here (nvidia-smi not found)"
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install 'dlopt[tensorrt]' on a machine with CUDA)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _why_no_gpu()
    if reason is None:
        return
    for item in items:
        if "gpu" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=reason))
