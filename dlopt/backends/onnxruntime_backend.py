"""ONNX Runtime: the CPU execution provider, and CUDA / TensorRT providers when installed
(`--provider`: auto picks TensorRT, then CUDA, then CPU; a named one must be installed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from dlopt.backends.tensorrt.plan import workspace_bytes
from dlopt.errors import BackendError, ConfigError
from dlopt.specs import TensorSpec, spec_from_graph

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
            from dlopt.backends.tensorrt.cuda import process_gpu_memory_bytes

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
    return spec_from_graph(name, shape, dtype)


# Provider selection is a run-time concern of this backend; `dlopt bench --provider` and the
# bench harness check the choice with it before any worker starts.
ORT_PROVIDER_CHOICES = ("auto", "tensorrt", "cuda", "cpu")
ORT_PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def ort_provider_plan(
    requested: str,
    available: Sequence[str],
    device_id: int = 0,
    workspace_mb: int | None = None,
    cache_dir: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """ONNX Runtime providers, in priority order, with their options, for `--provider`.

    `auto`: TensorRT, then CUDA, then CPU, as far as the installed wheel offers them; a named
    provider must be available (else BackendError listing what is) and falls back only to CPU
    for the nodes it cannot run. The TensorRT provider gets engine and timing caches in
    `cache_dir` (rebuilding engines on every load would be timed as first-run cost).
    """
    if requested not in ORT_PROVIDER_CHOICES:
        raise ConfigError(
            f"unknown provider {requested!r}", f"use one of {', '.join(ORT_PROVIDER_CHOICES)}"
        )
    if requested == "auto":
        wanted = [key for key in ("tensorrt", "cuda", "cpu") if ORT_PROVIDERS[key] in available]
    else:
        if ORT_PROVIDERS[requested] not in available:
            raise BackendError(
                f"ONNX Runtime here has no {ORT_PROVIDERS[requested]} (it has "
                f"{', '.join(available) or 'none'})",
                "install onnxruntime-gpu (and TensorRT for the tensorrt provider) on a machine "
                "with an NVIDIA GPU, or use --provider cpu",
            )
        wanted = [requested] if requested == "cpu" else [requested, "cpu"]
    plan: list[tuple[str, dict[str, Any]]] = []
    for key in wanted:
        options: dict[str, Any] = {}
        if key in ("tensorrt", "cuda"):
            options["device_id"] = device_id
        if key == "tensorrt":
            size = workspace_bytes(workspace_mb)
            if size is not None:
                options["trt_max_workspace_size"] = size
            if cache_dir is not None:
                options.update(
                    trt_engine_cache_enable=True,
                    trt_engine_cache_path=cache_dir,
                    trt_timing_cache_enable=True,
                    trt_timing_cache_path=cache_dir,
                )
        plan.append((ORT_PROVIDERS[key], options))
    return plan


def uses_gpu(providers: Sequence[str]) -> bool:
    """Whether a session with these providers runs on the GPU (GPU timing and memory rules)."""
    return any(name in (ORT_PROVIDERS["tensorrt"], ORT_PROVIDERS["cuda"]) for name in providers)
