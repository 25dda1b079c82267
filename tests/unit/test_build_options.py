"""BuildOptions validation, the `dlopt build` CLI's clean failures here, and lazy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlopt.artifacts import Manifest, write_manifest
from dlopt.backends import get_backend
from dlopt.backends.tensorrt.cuda import cuda_device_present
from dlopt.cli import app
from dlopt.errors import ConfigError, InputSpecError
from dlopt.optimize.build import BuildOptions

NO_TENSORRT_HERE = not cuda_device_present()


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"backend": "tflite"}, "openvino, tensorrt, torch-tensorrt"),
        ({"backend": "openvino", "precision": "int4"}, "fp32, fp16, int8"),
        ({"backend": "openvino", "workspace_mb": 64}, "TensorRT options"),
        ({"backend": "openvino", "compress_to_fp16": True}, "--precision fp16"),
        ({"backend": "tensorrt", "calibration_size": 0}, "at least 1"),
        ({"backend": "openvino", "precision_hint": "int8"}, "f32, bf16, f16"),
    ],
)
def test_bad_options_name_the_field_and_the_fix(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        BuildOptions(**kwargs)  # type: ignore[arg-type]
    assert fragment in caught.value.one_line()


def test_bad_shapes_are_caught_when_the_options_are_made() -> None:
    with pytest.raises(InputSpecError, match="image:8x1"):
        BuildOptions("tensorrt", shapes=("image:8x1/4x1/2x1",))


def test_fp16_weights_are_an_explicit_choice() -> None:
    assert BuildOptions("openvino", "fp32").weights_fp16() is False
    assert BuildOptions("openvino", "int8").weights_fp16() is False
    assert BuildOptions("openvino", "fp16").weights_fp16() is True
    assert BuildOptions("openvino", "fp16", compress_to_fp16=False).weights_fp16() is False


@pytest.mark.skipif(not NO_TENSORRT_HERE, reason="this machine has an NVIDIA GPU")
@pytest.mark.parametrize("backend", ["tensorrt", "torch-tensorrt"])
def test_tensorrt_builds_exit_2_naming_what_is_missing(tmp_path: Path, backend: str) -> None:
    model = _tiny_onnx(tmp_path / "tiny.onnx")
    result = CliRunner().invoke(
        app, ["build", str(model), "--backend", backend, "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 2, result.output
    assert "no NVIDIA GPU" in result.stderr
    assert "tensorrt is not installed" in result.stderr
    assert "--backend openvino" in result.stderr
    assert not (tmp_path / "out" / "model.plan").exists()


@pytest.mark.skipif(not NO_TENSORRT_HERE, reason="this machine has an NVIDIA GPU")
def test_tensorrt_backend_availability_and_load_say_what_is_missing(tmp_path: Path) -> None:
    from dlopt.backends.base import LoadOptions
    from dlopt.errors import BackendError

    backend = get_backend("tensorrt")
    availability = backend.availability()
    assert not availability.ok
    assert availability.reason is not None and "no NVIDIA GPU" in availability.reason
    model = _tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(BackendError) as caught:
        backend.load(str(model), LoadOptions())
    assert "no NVIDIA GPU" in caught.value.one_line()
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"ftrt-not-a-real-engine")
    write_manifest(engine, Manifest(format="tensorrt_plan", file=engine.name))
    with pytest.raises(BackendError) as caught:
        backend.load(str(engine), LoadOptions())
    assert "cannot run here: no NVIDIA GPU" in caught.value.one_line()


def test_build_modules_import_no_runtime() -> None:
    code = (
        "import sys, dlopt.cli, dlopt.commands.build, dlopt.optimize.build, "
        "dlopt.backends.tensorrt.plan, dlopt.optimize.build.shape_profiles, "
        "dlopt.backends.tensorrt.backend, dlopt.backends.tensorrt.cuda\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'openvino', 'tensorrt', 'nncf', 'cuda', "
        "'torch_tensorrt') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
