"""TensorRT: availability only for now; building and running engines come with the engines issue."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from pathlib import Path

from dlopt.backends.base import Availability, LoadOptions, Session
from dlopt.errors import BackendError


class TensorRTBackend:
    name = "tensorrt"
    formats = frozenset({"onnx", "tensorrt_plan"})

    def availability(self) -> Availability:
        version = None
        if importlib.util.find_spec("tensorrt") is not None:
            try:
                version = importlib.metadata.version("tensorrt")
            except importlib.metadata.PackageNotFoundError:
                version = "unknown"
        if not _cuda_device_present():
            return Availability(False, version, "no NVIDIA GPU (no /dev/nvidia0, no nvidia-smi)")
        if version is None:
            return Availability(
                False, None, "tensorrt is not installed (needs NVIDIA's package index)"
            )
        return Availability(True, version)

    def import_runtime(self) -> None:
        raise BackendError("the tensorrt backend cannot run models yet", self._missing())

    def load(self, artifact: str, options: LoadOptions) -> Session:
        raise BackendError(f"cannot run {artifact} on tensorrt", self._missing())

    def _missing(self) -> str:
        availability = self.availability()
        if not availability.ok:
            return f"{availability.reason}; use onnxruntime or openvino on this machine"
        return "engine building arrives with the TensorRT engines issue; use onnxruntime meanwhile"


def _cuda_device_present() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None
