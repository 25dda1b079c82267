"""The tensorrt backend given an ONNX file (as trtexec and Polygraphy are): how an artifact
reaches an engine, the profile, the precision the ONNX carries, the engine cache's key and
entries, the build time reported apart from loading, and which gate rows go to TensorRT.
The real builds are in tests/gpu/test_tensorrt_build.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlopt.artifacts import Manifest, write_manifest
from dlopt.backends.base import describe_artifact
from dlopt.backends.tensorrt.backend import _describe
from dlopt.backends.tensorrt.builder import inspect_onnx
from dlopt.backends.tensorrt.engine_cache import (
    CACHE_ENV,
    cache_folder,
    cached_engine,
    engine_key,
    entry_path,
    onnx_sha256,
    store_engine,
)
from dlopt.backends.tensorrt.engine_checks import GpuEnvironment
from dlopt.backends.tensorrt.onnx_engine import bench_profile, engine_source
from dlopt.backends.tensorrt.plan import qdq_refusal
from dlopt.errors import BackendError, ConfigError
from dlopt.harness.worker import split_load_time
from dlopt.specs import parse_input_specs

H100 = GpuEnvironment("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")
PROFILE = {"image": ((1, 1, 32, 32), (8, 1, 32, 32), (8, 1, 32, 32))}
PLAN = {"precision": "fp32", "clear_builder_flags": ["TF32"]}


def _matmul_onnx(path: Path, weight_type: int = TensorProto.FLOAT, qdq: str | None = None) -> Path:
    """x[batch, 4] @ w[4, 4]; with `qdq` ("int8" or "uint8") a Q/DQ pair on x first."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", weight_type, ["batch", 4])
    dtype = np.float16 if weight_type == TensorProto.FLOAT16 else np.float32
    initializers = [numpy_helper.from_array(np.eye(4, dtype=dtype), "w")]
    nodes = []
    source = "x"
    if weight_type == TensorProto.FLOAT16:
        nodes.append(helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16))
        source = "x16"
    if qdq is not None:
        zero = np.array(0 if qdq == "int8" else 128, np.int8 if qdq == "int8" else np.uint8)
        initializers += [
            numpy_helper.from_array(np.array(0.05, np.float32), "scale"),
            numpy_helper.from_array(zero, "zero"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "scale", "zero"], ["xd"]),
        ]
        source = "xd"
    nodes.append(helper.make_node("MatMul", [source, "w"], ["y"]))
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize(
    ("weight_type", "qdq", "precision"),
    [(TensorProto.FLOAT, None, "fp32"), (TensorProto.FLOAT16, None, "fp16"), (1, "int8", "int8")],
)
def test_the_engine_precision_is_the_one_the_onnx_carries(
    tmp_path: Path, weight_type: int, qdq: str | None, precision: str
) -> None:
    assert inspect_onnx(_matmul_onnx(tmp_path / "m.onnx", weight_type, qdq)).precision == precision


def test_onnx_runtime_u8_qdq_is_refused_before_tensorrt_sees_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        inspect_onnx(_matmul_onnx(tmp_path / "m.onnx", qdq="uint8"))

    assert "uint8 Q/DQ (ONNX Runtime's U8S8 format)" in caught.value.message
    assert caught.value.hint is not None and "--target tensorrt" in caught.value.hint


def test_asymmetric_int8_qdq_is_refused_too() -> None:
    assert qdq_refusal([("int8", True), ("int8", False)]) is not None
    assert qdq_refusal([("int8", True)]) is None
    assert qdq_refusal([]) is None


def test_a_plan_with_its_manifest_runs_as_it_is_and_an_onnx_is_built(tmp_path: Path) -> None:
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"engine bytes")
    write_manifest(plan, Manifest(format="tensorrt_plan", file=plan.name))
    model = _matmul_onnx(tmp_path / "m.onnx")

    assert engine_source(_describe(str(plan))) == "plan"
    assert engine_source(_describe(str(model))) == "onnx"


def test_a_plan_without_manifest_and_other_formats_are_refused_by_name(tmp_path: Path) -> None:
    bare = tmp_path / "bare.plan"
    bare.write_bytes(b"engine bytes")
    xml = tmp_path / "model.xml"
    xml.write_text("<?xml version='1.0'?><net/>")

    with pytest.raises(BackendError, match=r"bare\.plan has no dlopt manifest"):
        engine_source(_describe(str(bare)))
    with pytest.raises(BackendError, match=r"cannot run .*model\.xml \(openvino_ir\)"):
        engine_source(_describe(str(xml)))


def test_bench_profile_covers_the_bench_batch_and_keeps_static_dims() -> None:
    specs = parse_input_specs(["ids:batch=1xseq=64:int64", "image:batch=1x3x8x8"])

    profile = bench_profile(specs, batch_size=16)

    assert profile["ids"] == ((1, 1), (16, 64), (16, 64))
    assert profile["image"] == ((1, 3, 8, 8), (16, 3, 8, 8), (16, 3, 8, 8))
    assert bench_profile(specs)["ids"] == ((1, 1), (1, 64), (1, 64))


def test_the_cache_key_changes_with_everything_that_decides_the_engine() -> None:
    base = engine_key("a" * 64, H100, PROFILE, PLAN)
    variants = [
        engine_key("b" * 64, H100, PROFILE, PLAN),
        engine_key("a" * 64, GpuEnvironment("10.14.1", H100.gpu_name, "9.0"), PROFILE, PLAN),
        engine_key(
            "a" * 64, GpuEnvironment(H100.tensorrt_version, "NVIDIA L4", "8.9"), PROFILE, PLAN
        ),
        engine_key(
            "a" * 64, GpuEnvironment(H100.tensorrt_version, H100.gpu_name, "8.9"), PROFILE, PLAN
        ),
        engine_key("a" * 64, H100, {"image": ((1, 1, 32, 32),) * 3}, PLAN),
        engine_key("a" * 64, H100, PROFILE, {**PLAN, "precision": "fp16"}),
    ]

    assert engine_key("a" * 64, H100, PROFILE, PLAN).digest() == base.digest()
    assert len({key.digest() for key in [base, *variants]}) == len(variants) + 1


def test_the_onnx_hash_covers_its_external_data(tmp_path: Path) -> None:
    model, data = tmp_path / "m.onnx", tmp_path / "m.onnx.data"
    model.write_bytes(b"graph")
    data.write_bytes(b"weights v1")
    first = onnx_sha256(model, [data])
    data.write_bytes(b"weights v2")

    assert onnx_sha256(model, [data]) != first
    assert onnx_sha256(model, []) != first


def test_cache_folder_default_and_overrides(tmp_path: Path) -> None:
    assert cache_folder({CACHE_ENV: str(tmp_path / "engines")}) == tmp_path / "engines"
    assert cache_folder({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "dlopt" / "tensorrt"
    assert cache_folder({}) == Path.home() / ".cache" / "dlopt" / "tensorrt"


def test_a_stored_engine_is_found_again_only_under_its_own_key(tmp_path: Path) -> None:
    key = engine_key("a" * 64, H100, PROFILE, PLAN)
    other = engine_key("b" * 64, H100, PROFILE, PLAN)
    assert cached_engine(tmp_path, key) is None

    path = store_engine(tmp_path, key, b"engine bytes", Manifest("tensorrt_plan", ""))

    assert cached_engine(tmp_path, key) == path and path.read_bytes() == b"engine bytes"
    assert cached_engine(tmp_path, other) is None
    recorded = json.loads(path.with_name(path.name + ".dlopt.json").read_text())
    assert recorded["recipe"]["engine_cache_key"]["onnx_sha256"] == "a" * 64
    assert recorded["file"] == path.name


def test_an_engine_without_its_manifest_is_not_an_entry(tmp_path: Path) -> None:
    key = engine_key("a" * 64, H100, PROFILE, PLAN)
    entry_path(tmp_path, key).write_bytes(b"half written")  # a build killed before the manifest

    assert cached_engine(tmp_path, key) is None


def test_engine_build_time_is_reported_apart_from_loading() -> None:
    assert split_load_time(12.5, {"engine_build_s": 12.0}) == (0.5, 12.0)
    assert split_load_time(0.5, {"engine_build_s": None, "engine_cache": "hit"}) == (0.5, None)
    assert split_load_time(0.5, {}) == (0.5, None)


def test_gate_rows_route_onnx_and_plans_to_tensorrt_and_nothing_else(tmp_path: Path) -> None:
    """What the gate's bench plan sends to TensorRT: the FP32 ONNX, an unrestricted ONNX variant
    and the engine; not an IR, and not a variant restricted to onnxruntime. TensorRT is
    unavailable here, so each routed row is an optional-backend skip, which names the variant."""
    from dlopt.gate.bench_plan import runnable_on, unavailable_here
    from dlopt.gate.config import load_gate_config
    from dlopt.gate.pipeline import VariantArtifact

    fp32 = _matmul_onnx(tmp_path / "fp32.onnx")
    pruned = _matmul_onnx(tmp_path / "pruned.onnx")
    int8 = _matmul_onnx(tmp_path / "int8.onnx", qdq="uint8")
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"engine bytes")
    write_manifest(engine, Manifest(format="tensorrt_plan", file=engine.name))
    ir = tmp_path / "model.xml"
    ir.write_text("<?xml version='1.0'?><net/>")
    config_path = tmp_path / "dlopt.toml"
    config_path.write_text(
        '[model]\nsource = "model.py:create_model"\n'
        "[[variants]]\nname = 'pruned'\nprune = { amount = 0.5 }\n"
        "[[variants]]\nname = 'int8'\nquantize = { mode = 'dynamic' }\nbackends = ['onnxruntime']\n"
        "[[variants]]\nname = 'trt'\nbuild = { backend = 'tensorrt' }\n"
        "[[variants]]\nname = 'ov'\nbuild = { backend = 'openvino' }\n"
        "[bench]\nbackends = ['onnxruntime', 'tensorrt']\noptional_backends = ['tensorrt']\n"
    )
    config = load_gate_config(config_path)
    made = [
        VariantArtifact("fp32", "export", fp32),
        VariantArtifact("pruned", "prune", pruned),
        VariantArtifact("int8", "quantize", int8),
        VariantArtifact("trt", "build", engine),
        VariantArtifact("ov", "build", ir),
    ]
    assert describe_artifact(str(engine)).format == "tensorrt_plan"

    runnable = {"tensorrt": runnable_on("tensorrt", made, config.variants)}
    assert sorted(variant.name for variant in runnable["tensorrt"].values()) == [
        "fp32",
        "pruned",
        "trt",
    ]
    gates = unavailable_here(runnable, config)

    assert runnable["tensorrt"] == {}  # nothing left to bench on a machine without TensorRT
    assert {gate.variant: gate.verdict.value for gate in gates} == {
        "fp32": "skipped",
        "pruned": "skipped",
        "trt": "skipped",
    }
