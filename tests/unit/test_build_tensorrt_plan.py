"""The pure TensorRT logic: versions, precision plans, engine compatibility, ORT providers."""

from __future__ import annotations

import pytest

from dlopt.backends.onnxruntime_backend import ort_provider_plan, uses_gpu
from dlopt.backends.tensorrt.engine_checks import (
    GpuEnvironment,
    check_engine_compatible,
    engine_compatibility_problems,
    parse_version,
)
from dlopt.backends.tensorrt.plan import (
    detect_onnx_precision,
    network_creation_flags,
    plan_tensorrt_build,
    workspace_bytes,
)
from dlopt.errors import BackendError, ConfigError

HERE = GpuEnvironment("11.0.0.1", "NVIDIA H100 80GB HBM3", "9.0")
ALL_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_parse_version_reads_build_suffixes() -> None:
    assert parse_version("10.13.0.35") == (10, 13, 0, 35)
    assert parse_version("11.0.0+cuda13") == (11, 0, 0)
    with pytest.raises(BackendError):
        parse_version("unknown")


@pytest.mark.parametrize(
    ("version", "flags"),
    [("10.12.0", ["STRONGLY_TYPED"]), ("10.16.1.11", ["STRONGLY_TYPED"]), ("11.0.0", [])],
)
def test_strongly_typed_flag_only_where_it_is_needed(version: str, flags: list[str]) -> None:
    assert network_creation_flags(version) == flags


def test_versions_with_only_weak_typing_are_refused_by_name() -> None:
    with pytest.raises(BackendError, match=r"TensorRT 10\.8\.0 is too old.*10\.12"):
        network_creation_flags("10.8.0")


@pytest.mark.parametrize(
    ("ops", "types", "expected"),
    [
        ({"Conv", "Relu"}, {"float"}, "fp32"),
        ({"Conv", "Cast"}, {"float16", "float"}, "fp16"),
        ({"QuantizeLinear", "DequantizeLinear", "Conv"}, {"float"}, "int8"),
        ({"MatMul"}, set(), "fp32"),
    ],
)
def test_detect_onnx_precision(ops: set[str], types: set[str], expected: str) -> None:
    assert detect_onnx_precision(ops, types) == expected


def test_fp32_engine_clears_tf32_unless_allowed() -> None:
    strict = plan_tensorrt_build("fp32", "fp32", "11.0.0")
    relaxed = plan_tensorrt_build("fp32", "fp32", "11.0.0", allow_tf32=True)
    assert strict.clear_builder_flags == ("TF32",)
    assert relaxed.clear_builder_flags == ()
    assert strict.set_builder_flags == ()  # no precision flags exist in TensorRT 11


def test_fp16_engine_converts_the_onnx_preferring_modelopt() -> None:
    both = plan_tensorrt_build(
        "fp16", "fp32", "10.13.0", ["onnxconverter-common", "modelopt-autocast"]
    )
    cpu_only = plan_tensorrt_build("fp16", "fp32", "11.0.0", ["onnxconverter-common"])
    assert both.convert_to_fp16_with == "modelopt-autocast"
    assert both.network_flags == ("STRONGLY_TYPED",)
    assert cpu_only.convert_to_fp16_with == "onnxconverter-common"
    assert plan_tensorrt_build("fp16", "fp16", "11.0.0").convert_to_fp16_with is None


def test_fp16_without_any_converter_names_both() -> None:
    with pytest.raises(ConfigError, match="ModelOpt nor onnxconverter-common"):
        plan_tensorrt_build("fp16", "fp32", "11.0.0", [])


def test_int8_needs_a_qdq_onnx_and_says_how_to_make_one() -> None:
    with pytest.raises(ConfigError) as caught:
        plan_tensorrt_build("int8", "fp32", "11.0.0")
    assert "dlopt quantize" in caught.value.one_line()
    assert "--target tensorrt" in caught.value.one_line()
    assert plan_tensorrt_build("int8", "int8", "11.0.0").precision == "int8"


@pytest.mark.parametrize(
    ("requested", "graph"), [("fp32", "int8"), ("fp16", "int8"), ("fp32", "fp16")]
)
def test_a_graph_cannot_be_built_at_another_precision(requested: str, graph: str) -> None:
    with pytest.raises(ConfigError):
        plan_tensorrt_build(requested, graph, "11.0.0")


def test_unknown_precision_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        plan_tensorrt_build("bf16", "fp32", "11.0.0")
    assert "fp32, fp16, int8" in caught.value.one_line()


def test_workspace_in_bytes() -> None:
    assert workspace_bytes(None) is None
    assert workspace_bytes(256) == 256 * 1024 * 1024
    with pytest.raises(ConfigError):
        workspace_bytes(0)


def test_same_version_and_gpu_is_compatible() -> None:
    recorded = HERE.to_dict()
    assert engine_compatibility_problems(recorded, HERE) == []
    check_engine_compatible("model.plan", recorded, HERE)  # does not raise


def test_another_tensorrt_version_is_refused_with_both_versions() -> None:
    recorded = {**HERE.to_dict(), "tensorrt_version": "10.13.0.35"}
    with pytest.raises(BackendError) as caught:
        check_engine_compatible("model.plan", recorded, HERE)
    message = caught.value.one_line()
    assert "10.13.0.35" in message and "11.0.0.1" in message
    assert "rebuild it here" in message.lower()


def test_another_gpu_architecture_is_refused_but_the_same_one_is_not() -> None:
    other_arch = {**HERE.to_dict(), "gpu_name": "NVIDIA A100", "compute_capability": "8.0"}
    same_arch = {**HERE.to_dict(), "gpu_name": "NVIDIA H100 PCIe"}
    problems = engine_compatibility_problems(other_arch, HERE)
    assert len(problems) == 1 and "NVIDIA A100" in problems[0] and "sm 9.0" in problems[0]
    assert engine_compatibility_problems(same_arch, HERE) == []


def test_compatibility_flags_recorded_at_build_time_relax_the_checks() -> None:
    recorded = {
        "tensorrt_version": "11.0.0.0",
        "version_compatible": True,
        "gpu_name": "NVIDIA A100",
        "compute_capability": "8.0",
        "hardware_compatibility": "AMPERE_PLUS",
    }
    assert engine_compatibility_problems(recorded, HERE) == []


def test_an_engine_without_manifest_is_refused() -> None:
    with pytest.raises(BackendError, match="no dlopt manifest"):
        check_engine_compatible("model.plan", None, HERE)
    assert len(engine_compatibility_problems({}, HERE)) == 2


def test_auto_providers_follow_what_the_wheel_offers() -> None:
    cpu_wheel = ort_provider_plan("auto", ["AzureExecutionProvider", "CPUExecutionProvider"])
    gpu_wheel = ort_provider_plan("auto", ALL_PROVIDERS, device_id=1, cache_dir="/tmp/c")
    assert cpu_wheel == [("CPUExecutionProvider", {})]
    assert [name for name, _ in gpu_wheel] == ALL_PROVIDERS
    trt_options = gpu_wheel[0][1]
    assert trt_options["device_id"] == 1
    assert trt_options["trt_engine_cache_enable"] and trt_options["trt_timing_cache_enable"]
    assert gpu_wheel[1][1] == {"device_id": 1}
    assert uses_gpu([name for name, _ in gpu_wheel]) and not uses_gpu(["CPUExecutionProvider"])


def test_a_named_provider_falls_back_to_cpu_only() -> None:
    plan = ort_provider_plan("cuda", ALL_PROVIDERS)
    assert [name for name, _ in plan] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    sized = ort_provider_plan("tensorrt", ALL_PROVIDERS, workspace_mb=64)
    assert sized[0][1]["trt_max_workspace_size"] == 64 << 20


def test_a_missing_provider_says_what_is_there() -> None:
    with pytest.raises(BackendError, match=r"no TensorrtExecutionProvider.*CPUExecutionProvider"):
        ort_provider_plan("tensorrt", ["CPUExecutionProvider"])
    with pytest.raises(ConfigError) as caught:
        ort_provider_plan("rocm", ALL_PROVIDERS)
    assert "auto, tensorrt, cuda, cpu" in caught.value.one_line()
