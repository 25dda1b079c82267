"""dlopt's CUDA layer (device buffers, copies, streams, errors, GPU identity and per-process
memory) on a real GPU: the part of the TensorRT runner that does not need TensorRT."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from dlopt.backends.tensorrt.cuda import (
    DeviceBuffer,
    check,
    copy_to_device,
    copy_to_host,
    cudart,
    process_gpu_memory_bytes,
)
from dlopt.errors import BackendError


@pytest.fixture
def stream() -> object:
    runtime = cudart()
    created = check(runtime.cudaStreamCreate())
    yield created
    check(runtime.cudaStreamDestroy(created))


def test_arrays_survive_a_round_trip_through_the_device(stream: object) -> None:
    runtime = cudart()
    sent = np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32)
    back = np.zeros_like(sent)
    buffer = DeviceBuffer()
    try:
        copy_to_device(buffer.ensure(sent.nbytes), sent, stream)
        copy_to_host(back, buffer.pointer, stream)
        check(runtime.cudaStreamSynchronize(stream))
    finally:
        buffer.free()
    np.testing.assert_array_equal(back, sent)
    assert buffer.pointer == 0 and buffer.nbytes == 0


def test_a_buffer_grows_only_when_a_larger_tensor_needs_it() -> None:
    buffer = DeviceBuffer()
    try:
        first = buffer.ensure(1 << 20)
        assert buffer.ensure(1 << 10) == first and buffer.nbytes == 1 << 20
        assert buffer.ensure(1 << 22) != 0 and buffer.nbytes == 1 << 22
    finally:
        buffer.free()


def test_a_failing_cuda_call_is_a_backend_error_naming_the_cuda_error() -> None:
    with pytest.raises(BackendError, match="cudaErrorInvalidDevice"):
        check(cudart().cudaSetDevice(9999))
    check(cudart().cudaSetDevice(0))  # the error is not sticky: the device still works


def test_gpu_name_from_nvidia_smi_matches_cudart() -> None:
    properties = check(cudart().cudaGetDeviceProperties(0))
    name = properties.name
    name = name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)
    assert nvidia_smi_gpu_name() == name.strip()


def test_process_gpu_memory_sees_an_allocation() -> None:
    buffer = DeviceBuffer()
    try:
        buffer.ensure(256 << 20)
        held = process_gpu_memory_bytes()
    finally:
        buffer.free()
    if held is None:
        pytest.skip("NVML (nvidia-ml-py) is not installed or not usable here")
    assert held >= 256 << 20


def nvidia_smi_gpu_name() -> str | None:
    """The first GPU's name from nvidia-smi (None without it), to cross-check cudart's."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return output.strip() or None
