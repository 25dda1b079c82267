"""GPU tests run only where an NVIDIA GPU is present: the TensorRT ones also need TensorRT
(dlopt[tensorrt]), the CUDA-runtime ones cuda-python and nvidia-ml-py."""

from __future__ import annotations

import importlib.util
import shutil

import pytest


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a parent package is missing
        return True


def _why_skip(path: str) -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU here (nvidia-smi not found)"
    if "test_tensorrt" in path and _missing("tensorrt"):
        return "TensorRT is not installed (pip install 'dlopt[tensorrt]' on a machine with CUDA)"
    if _missing("cuda.bindings") and _missing("cuda.cudart"):
        return "cuda-python is not installed (pip install 'dlopt[tensorrt]')"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "gpu" not in str(item.fspath):
            continue
        reason = _why_skip(str(item.fspath))
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
