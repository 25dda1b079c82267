"""The backend registry, availability without heavy imports, and feed checking."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dlopt.backends import BACKENDS, get_backend
from dlopt.backends.base import check_feeds
from dlopt.errors import BackendError
from dlopt.specs import parse_input_specs


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(BackendError) as caught:
        get_backend("tflite")

    assert "tflite" in caught.value.message
    assert all(name in (caught.value.hint or "") for name in BACKENDS)


def test_every_registered_backend_resolves_with_its_name() -> None:
    for name in BACKENDS:
        backend = get_backend(name)
        assert backend.name == name
        assert backend.formats


def test_availability_imports_no_runtime() -> None:
    code = (
        "import sys\n"
        "from dlopt.backends import BACKENDS, get_backend\n"
        "for name in BACKENDS: get_backend(name).availability()\n"
        "runtimes = ('torch', 'onnxruntime', 'openvino', 'tensorrt')\n"
        "heavy = [m for m in runtimes if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == ""


def test_installed_backends_report_versions_and_tensorrt_says_why_not() -> None:
    for name in ("torch", "onnxruntime", "openvino"):
        availability = get_backend(name).availability()
        assert availability.ok and availability.version

    tensorrt = get_backend("tensorrt").availability()
    if not tensorrt.ok:
        assert tensorrt.reason


def test_tensorrt_load_names_what_is_missing() -> None:
    backend = get_backend("tensorrt")
    if backend.availability().ok:
        pytest.skip("TensorRT is available here")
    with pytest.raises(BackendError) as caught:
        backend.load("model.onnx", None)  # type: ignore[arg-type]

    # The reason TensorRT cannot run here, not any error that happens to name the backend.
    assert caught.value.message.startswith("the tensorrt backend cannot run here: ")
    reason = backend.availability().reason
    assert reason is not None and reason in caught.value.message
    assert caught.value.hint is not None and "use onnxruntime or openvino" in caught.value.hint


SPECS = parse_input_specs(["ids:batch=2xseq=4:int64", "mask:batch=2xseq=4:int64"])


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({"ids": np.zeros((2, 4), np.int64)}, "missing"),
        ({"ids": np.zeros((2, 4, 1), np.int64), "mask": np.zeros((2, 4), np.int64)}, "rank 3"),
        ({"ids": np.zeros((2, 4), np.int32), "mask": np.zeros((2, 4), np.int64)}, "int32"),
        ({"ids": np.zeros((2, 4), np.int64), "mask": np.zeros((2, 5), np.int64)}, "axis 'seq'"),
    ],
)
def test_feed_mismatches_name_the_input(feeds: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(BackendError, match=message):
        check_feeds(feeds, SPECS, "test session")


def test_static_dims_are_checked() -> None:
    specs = parse_input_specs(["image:1x3x8x8"])

    with pytest.raises(BackendError, match="size 2 on axis 0"):
        check_feeds({"image": np.zeros((2, 3, 8, 8), np.float32)}, specs, "s")
