"""The one place dlopt touches CUDA directly: device buffers, a stream, events, GPU identity
and per-process GPU memory.

Buffers, streams and events come from cuda-python's runtime bindings (`cuda.bindings.runtime`,
or `cuda.cudart` in older cuda-python), which TensorRT's own Python samples use and which
installs with TensorRT. GPU memory per process comes from NVML (`pynvml`, the nvidia-ml-py
package) when installed. Everything is imported inside functions.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any

from dlopt.backends.tensorrt import INSTALL_HINT
from dlopt.backends.tensorrt.engine_checks import GpuEnvironment
from dlopt.errors import BackendError


def cudart() -> Any:
    """cuda-python's runtime module; BackendError when cuda-python is not installed."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # cuda-python < 12.6
        except ImportError as error:
            raise BackendError(
                "cuda-python is not installed (the TensorRT runner needs it for device buffers)",
                INSTALL_HINT,
            ) from error
    return runtime


def check(result: Any) -> Any:
    """Unwrap a cuda-python call's `(error, value...)` tuple; raise BackendError on an error."""
    runtime = cudart()
    error, *values = result if isinstance(result, tuple) else (result,)
    if error != runtime.cudaError_t.cudaSuccess:
        name = runtime.cudaGetErrorName(error)[1]
        raise BackendError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class DeviceBuffer:
    """A growable device allocation: reallocated only when a larger tensor needs it."""

    def __init__(self) -> None:
        self.pointer = 0
        self.nbytes = 0

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.free()
            self.pointer = int(check(cudart().cudaMalloc(max(nbytes, 1))))
            self.nbytes = nbytes
        return self.pointer

    def free(self) -> None:
        if self.pointer:
            check(cudart().cudaFree(self.pointer))
        self.pointer, self.nbytes = 0, 0


def copy_to_device(pointer: int, array: Any, stream: Any) -> None:
    runtime = cudart()
    check(
        runtime.cudaMemcpyAsync(
            pointer,
            array.ctypes.data,
            array.nbytes,
            runtime.cudaMemcpyKind.cudaMemcpyHostToDevice,
            stream,
        )
    )


def copy_to_host(array: Any, pointer: int, stream: Any) -> None:
    runtime = cudart()
    check(
        runtime.cudaMemcpyAsync(
            array.ctypes.data,
            pointer,
            array.nbytes,
            runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost,
            stream,
        )
    )


def gpu_environment(device: int = 0) -> GpuEnvironment:
    """TensorRT version, GPU name and compute capability of `device` (from cudart)."""
    import tensorrt as trt

    properties = check(cudart().cudaGetDeviceProperties(device))
    name = properties.name
    name = name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)
    return GpuEnvironment(str(trt.__version__), name, f"{properties.major}.{properties.minor}")


def cuda_device_present() -> bool:
    """A cheap check with no CUDA import: the driver's device node or nvidia-smi."""
    return os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi") is not None


def process_gpu_memory_bytes(device: int = 0, pid: int | None = None) -> int | None:
    """GPU memory this process holds on `device`, from NVML; None when NVML is unavailable."""
    try:
        import pynvml
    except ImportError:
        return None
    pid = os.getpid() if pid is None else pid
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device)
        for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if process.pid == pid and process.usedGpuMemory is not None:
                return int(process.usedGpuMemory)
        return 0
    except pynvml.NVMLError:
        return None
    finally:
        # Shutting down NVML must never hide the measurement.
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
