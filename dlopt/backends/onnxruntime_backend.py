"""ONNX Runtime: the CPU execution provider, and CUDA / TensorRT providers when installed
(`--provider`: auto picks TensorRT, then CUDA, then CPU; a named one must be installed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dlopt.backends.base import (
    ArtifactInfo,
    Availability,
    CheckedSession,
    LoadOptions,
    describe_artifact,
    package_availability,
    rename_outputs,
    unsupported_format,
)
from dlopt.errors import BackendError
from dlopt.optimize.tensorrt_plan import ort_provider_plan, uses_gpu
from dlopt.specs import Dim, TensorSpec

ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
}


class OnnxRuntimeBackend:
    name = "onnxruntime"
    formats = frozenset({"onnx"})

    def availability(self) -> Availability:
        return package_availability("onnxruntime", "onnxruntime", "onnxruntime-gpu")

    def import_runtime(self) -> None:
        import onnxruntime  # noqa: F401

    def load(self, artifact: str, options: LoadOptions) -> OnnxRuntimeSession:
        info = describe_artifact(artifact)
        if info.format not in self.formats:
            raise unsupported_format(self.name, info, self.formats)
        return OnnxRuntimeSession(info, options)


class OnnxRuntimeSession(CheckedSession):
    def __init__(self, artifact: ArtifactInfo, options: LoadOptions) -> None:
        import onnxruntime as ort

        threads = options.resolved_threads()
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = threads
        session_options.inter_op_num_threads = 1
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        plan = ort_provider_plan(options.provider or "auto", ort.get_available_providers())
        self.where = f"onnxruntime session for {artifact.text}"
        model: str | bytes = str(artifact.path)
        if artifact.encrypted:
            from dlopt.backends.encrypted import decrypted_members

            model = next(iter(decrypted_members(artifact, options).values()))
        try:
            self.session = ort.InferenceSession(model, sess_options=session_options, providers=plan)
        except Exception as error:
            raise BackendError(
                f"ONNX Runtime cannot load {artifact.text}: {str(error).splitlines()[0][:300]}",
                "check the file with onnx.checker, or re-export it",
            ) from error
        self.inputs = artifact.inputs or [
            _spec_from_ort(node.name, node.shape, node.type) for node in self.session.get_inputs()
        ]
        self._stable_names = artifact.outputs
        runtime_names = [node.name for node in self.session.get_outputs()]
        self.output_names = (
            list(artifact.outputs)
            if artifact.outputs and len(artifact.outputs) == len(runtime_names)
            else runtime_names
        )
        self.info: dict[str, Any] = {
            "threads": threads,
            "inter_op_threads": 1,
            "providers": self.session.get_providers(),
            "precision_hint": None,
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "onnxruntime_version": ort.__version__,
        }
        if uses_gpu(self.session.get_providers()):
            from dlopt.backends.tensorrt_cuda import process_gpu_memory_bytes

            # session.run returns host arrays, so the harness's wall clock already includes the
            # device synchronization and the copies back.
            self.info["timing"] = "host wall clock; session.run returns host arrays (synchronous)"
            self.info["gpu_memory_after_load_bytes"] = process_gpu_memory_bytes()

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(None, dict(feeds))
        names = [node.name for node in self.session.get_outputs()]
        return rename_outputs(list(zip(names, values, strict=True)), self._stable_names)

    def close(self) -> None:
        self.session = None


def _spec_from_ort(name: str, shape: list[Any], type_name: str) -> TensorSpec:
    dtype = ORT_DTYPES.get(type_name)
    if dtype is None:
        raise BackendError(f"input {name!r} has type {type_name}, which dlopt cannot feed yet")
    dims = tuple(
        Dim(dim, None) if isinstance(dim, int) and dim > 0 else Dim(1, _axis_name(dim, name, i))
        for i, dim in enumerate(shape)
    )
    return TensorSpec(name, dims, dtype)


def _axis_name(dim: Any, input_name: str, index: int) -> str:
    text = "".join(c if c.isalnum() or c == "_" else "_" for c in str(dim or ""))
    if not text or not (text[0].isalpha() or text[0] == "_"):
        return "batch" if index == 0 else f"{input_name}_dim{index}"
    return text
