"""TensorRT: runs serialized engines built by `dlopt build --backend tensorrt`, and ONNX files,
for which it builds (or finds in its engine cache) an engine first, as trtexec and Polygraphy
do (`onnx_engine.py`); the build time is recorded apart from loading (`engine_build_s`).

Before deserializing, the engine's manifest is checked against this machine (TensorRT version,
GPU compute capability): a mismatch is a BackendError that says which, never a crash inside
TensorRT. A session keeps device buffers (grown on demand), one CUDA stream and two events:
`run` copies inputs in, executes, copies outputs out and synchronizes the stream before it
returns host arrays; `last_gpu_ms` is the device time of the last call between the events.
`info` records the engine's device memory size and the GPU memory this process holds (NVML).
All TensorRT and CUDA imports happen in `load`, so availability checks import nothing heavy.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dlopt.artifacts import read_manifest
from dlopt.backends.base import (
    ArtifactInfo,
    Availability,
    CheckedSession,
    LoadOptions,
    describe_artifact,
)
from dlopt.backends.tensorrt import INSTALL_HINT
from dlopt.backends.tensorrt.engine_checks import (
    MIN_TENSORRT_VERSION,
    check_engine_compatible,
    parse_version,
)
from dlopt.backends.tensorrt.onnx_engine import engine_for_onnx, engine_source
from dlopt.errors import BackendError
from dlopt.specs import TensorSpec


class TensorRTBackend:
    name = "tensorrt"
    # An ONNX file is built into an engine first (engine cache), a plan runs as it is.
    formats = frozenset({"onnx", "tensorrt_plan"})

    def availability(self) -> Availability:
        """Every missing piece at once: no GPU, TensorRT not installed, a version too old."""
        from dlopt.backends.tensorrt.cuda import cuda_device_present

        version = None
        if importlib.util.find_spec("tensorrt") is not None:
            try:
                version = importlib.metadata.version("tensorrt")
            except importlib.metadata.PackageNotFoundError:
                version = "unknown"
        missing = []
        if not cuda_device_present():
            missing.append("no NVIDIA GPU (no /dev/nvidia0, no nvidia-smi)")
        if version is None:
            missing.append("tensorrt is not installed (needs NVIDIA's package index)")
        elif version != "unknown" and parse_version(version)[:2] < MIN_TENSORRT_VERSION:
            missing.append(
                f"TensorRT {version} is older than "
                f"{'.'.join(map(str, MIN_TENSORRT_VERSION))}, the oldest dlopt supports"
            )
        if missing:
            return Availability(False, version, "; ".join(missing))
        return Availability(True, version)

    def import_runtime(self) -> None:
        self._require()
        import tensorrt  # noqa: F401

    def load(self, artifact: str, options: LoadOptions) -> TensorRTSession:
        self._require()  # first: on a machine without TensorRT that is the whole answer
        info = _describe(artifact)
        if engine_source(info) == "plan":
            return TensorRTSession(info, options)
        engine = engine_for_onnx(info, options.batch_size)
        session = TensorRTSession(_describe(str(engine.path)), options)
        session.info.update(engine.info(Path(artifact)))
        return session

    def _require(self) -> None:
        availability = self.availability()
        if not availability.ok:
            raise BackendError(
                f"the tensorrt backend cannot run here: {availability.reason}",
                f"{INSTALL_HINT}; use onnxruntime or openvino on this machine",
            )


def _describe(artifact: str) -> ArtifactInfo:
    """An engine (`.plan`/`.engine`, opaque bytes) described by its manifest."""
    path = Path(artifact)
    manifest = read_manifest(path) if path.is_file() else None
    if manifest is None or manifest.get("format") != "tensorrt_plan":
        return describe_artifact(artifact)
    return ArtifactInfo(
        artifact,
        "tensorrt_plan",
        path,
        inputs=[TensorSpec.from_dict(item) for item in manifest.get("inputs", [])] or None,
        outputs=list(manifest.get("outputs", [])) or None,
        precision=str(manifest.get("precision", "fp32")),
        manifest=manifest,
    )


class TensorRTSession(CheckedSession):
    def __init__(self, artifact: ArtifactInfo, options: LoadOptions, device: int = 0) -> None:
        import tensorrt as trt

        from dlopt.backends.tensorrt import cuda

        self.where = f"tensorrt session for {artifact.text}"
        here = cuda.gpu_environment(device)
        recorded = (artifact.manifest or {}).get("recipe", {}).get("tensorrt")
        check_engine_compatible(artifact.text, recorded, here)
        assert artifact.path is not None
        self._trt = trt
        self._cuda = cuda
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(artifact.path.read_bytes())
        if self.engine is None:
            raise BackendError(
                f"TensorRT could not deserialize {artifact.text}",
                "rebuild it here with dlopt build --backend tensorrt",
            )
        self.context = self.engine.create_execution_context()
        runtime = cuda.cudart()
        self._stream = cuda.check(runtime.cudaStreamCreate())
        self._start = cuda.check(runtime.cudaEventCreate())
        self._end = cuda.check(runtime.cudaEventCreate())
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._input_names = [
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        ]
        self._runtime_outputs = [n for n in names if n not in self._input_names]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._buffers = {n: cuda.DeviceBuffer() for n in names}
        self.inputs = list(artifact.inputs or [])
        if not self.inputs:
            raise BackendError(f"{artifact.text} has no input specs in its manifest")
        stable = artifact.outputs
        self.output_names = (
            list(stable)
            if stable and len(stable) == len(self._runtime_outputs)
            else list(self._runtime_outputs)
        )
        self.last_gpu_ms: float | None = None
        # device_memory_size became device_memory_size_v2 in TensorRT 11 (v2 exists in 10.x).
        device_memory = getattr(self.engine, "device_memory_size_v2", None)
        if device_memory is None:
            device_memory = getattr(self.engine, "device_memory_size", None)
        self.info: dict[str, Any] = {
            "device": f"cuda:{device}",
            "gpu_name": here.gpu_name,
            "compute_capability": here.compute_capability,
            "tensorrt_version": here.tensorrt_version,
            "engine_device_memory_bytes": device_memory,
            "process_gpu_memory_bytes": cuda.process_gpu_memory_bytes(device),
            "timing": "cuda_events",
            "threads": options.resolved_threads(),
            "precision_hint": None,
        }

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda = self._cuda
        runtime = cuda.cudart()
        for name in self._input_names:
            array = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
            if not self.context.set_input_shape(name, array.shape):
                raise BackendError(
                    f"{self.where}: input {name!r} of shape {array.shape} is outside the "
                    "engine's optimization profile",
                    "build the engine for these shapes (dlopt build --shapes), or bench with "
                    "a --batch-size inside its profile",
                )
            pointer = self._buffers[name].ensure(array.nbytes)
            cuda.copy_to_device(pointer, array, self._stream)
            self.context.set_tensor_address(name, pointer)
        outputs: list[tuple[str, np.ndarray]] = []
        for name in self._runtime_outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            host = np.empty(shape, dtype=self._dtypes[name])
            self.context.set_tensor_address(name, self._buffers[name].ensure(host.nbytes))
            outputs.append((name, host))
        cuda.check(runtime.cudaEventRecord(self._start, self._stream))
        if not self.context.execute_async_v3(self._stream):
            raise BackendError(f"{self.where}: TensorRT execution failed")
        cuda.check(runtime.cudaEventRecord(self._end, self._stream))
        for name, host in outputs:
            cuda.copy_to_host(host, self._buffers[name].pointer, self._stream)
        # Host arrays are only valid once the copies on the stream are done.
        cuda.check(runtime.cudaStreamSynchronize(self._stream))
        self.last_gpu_ms = float(cuda.check(runtime.cudaEventElapsedTime(self._start, self._end)))
        if len(self.output_names) == len(outputs):
            return {
                stable: host for stable, (_, host) in zip(self.output_names, outputs, strict=True)
            }
        return dict(outputs)

    def close(self) -> None:
        if getattr(self, "context", None) is None:
            return
        runtime = self._cuda.cudart()
        for buffer in self._buffers.values():
            buffer.free()
        runtime.cudaEventDestroy(self._start)
        runtime.cudaEventDestroy(self._end)
        runtime.cudaStreamDestroy(self._stream)
        self.context = None
        self.engine = None
