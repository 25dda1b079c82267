"""Backends: one module each, found through this literal registry and imported on demand.

Adding a backend is one module with a class that follows `dlopt.backends.base.Backend` and one
line here. Nothing heavy is imported until a backend loads a model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from dlopt.errors import BackendError

if TYPE_CHECKING:
    from dlopt.backends.base import Backend

BACKENDS: dict[str, str] = {
    "torch": "dlopt.backends.torch_backend:TorchBackend",
    "onnxruntime": "dlopt.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "openvino": "dlopt.backends.openvino_backend:OpenVinoBackend",
    "tensorrt": "dlopt.backends.tensorrt.backend:TensorRTBackend",
}


def get_backend(name: str) -> Backend:
    """The backend called `name`; raises BackendError listing the known ones."""
    target = BACKENDS.get(name)
    if target is None:
        raise BackendError(f"unknown backend {name!r}", f"known backends: {', '.join(BACKENDS)}")
    module_name, class_name = target.split(":")
    backend: Backend = getattr(importlib.import_module(module_name), class_name)()
    return backend
