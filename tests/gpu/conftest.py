"""GPU tests run only where an NVIDIA GPU is present: the TensorRT ones also need TensorRT
(dlopt[tensorrt]), the CUDA-runtime ones cuda-python and nvidia-ml-py."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

GPU_TESTS = Path(__file__).resolve().parent


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a parent package is missing
        return True


def _why_skip(path: str) -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU here (nvidia-smi not found)"
    if Path(path).name.startswith("test_tensorrt") and _missing("tensorrt"):
        return "TensorRT is not installed (pip install 'dlopt[tensorrt]' on a machine with CUDA)"
    if _missing("cuda.bindings") and _missing("cuda.cudart"):
        return "cuda-python is not installed (pip install 'dlopt[tensorrt]')"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every test of the session, not only tests/gpu: match this folder, never
    # "gpu" in the path (a checkout in /ci/gpu-runner/ or /ci/gpu/ would skip every test).
    for item in items:
        if not Path(str(item.fspath)).resolve().is_relative_to(GPU_TESTS):
            continue
        reason = _why_skip(str(item.fspath))
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
