"""`dlopt quantize` on the samples and on a model built to need accuracy-aware quantization:
every target that runs here, accuracy and drift floors, determinism, budgets, errors."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.harness.drift import cosine_similarity, top1_agreement
from dlopt.optimize.quantize import QuantizeOptions, quantize_model
from tests.integration.conftest import ROOT, SAMPLES, sample_source, sample_weights
from tests.integration.quantized_graphs import (
    assert_dynamic_int8_onnx,
    assert_fp16_ir,
    assert_fp16_onnx,
    assert_int8_ir,
    assert_static_int8_onnx,
    fp32_ir,
)

CNN_CALIBRATION = f"{SAMPLES / 'digits_cnn' / 'data.py'}:calibration"
OUTLIER_NET = f"{ROOT / 'tests' / 'fixtures' / 'quantize_models.py'}:outlier_net"


def sample_data(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"{name}_data", SAMPLES / name / "data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def test_static_int8_cnn_keeps_accuracy_and_is_byte_identical(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    fp32 = exported_sample("digits_cnn") / "model.onnx"
    options = QuantizeOptions(mode="static", calibration=CNN_CALIBRATION, calibration_size=96)

    first = quantize_model(str(fp32), tmp_path / "a", options)
    second = quantize_model(str(fp32), tmp_path / "b", options)

    assert first.path.read_bytes() == second.path.read_bytes()
    assert_static_int8_onnx(first.path)
    manifest = json.loads(first.manifest_path.read_text())
    assert manifest["precision"] == "int8" and manifest["recipe"]["activation_type"] == "QUInt8"
    assert manifest["recipe"]["calibration"]["samples"] == 96
    assert len(manifest["recipe"]["calibration"]["sha256"]) == 64
    assert (
        manifest["parent"]["sha256"]
        == json.loads((fp32.parent / "model.onnx.dlopt.json").read_text())["sha256"]
    )
    correct = {"fp32": 0, "int8": 0}
    total = 0
    for batch in sample_data("digits_cnn").evaluation(batch_size=120):
        for name, path in (("fp32", fp32), ("int8", first.path)):
            logits = run(path, {"image": batch["image"]})
            correct[name] += int((logits.argmax(1) == batch["labels"]).sum())
        total += len(batch["labels"])
    assert correct["fp32"] / total - correct["int8"] / total <= 0.01


def test_dynamic_int8_transformer_stays_close_to_fp32(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    fp32 = exported_sample("text_transformer") / "model.onnx"

    result = quantize_model(str(fp32), tmp_path / "q", QuantizeOptions(mode="dynamic"))

    assert_dynamic_int8_onnx(result.path)
    reference, quantized = [], []
    for index, batch in enumerate(sample_data("text_transformer").evaluation(batch_size=50)):
        if index == 4:
            break
        feed = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        reference.append(run(fp32, feed))
        quantized.append(run(result.path, feed))
    reference_logits, quantized_logits = np.concatenate(reference), np.concatenate(quantized)
    # Floors from runs here: cosine 0.99996, agreement 1.0 on 300 sequences.
    assert cosine_similarity(quantized_logits, reference_logits) >= 0.995
    assert top1_agreement(quantized_logits, reference_logits) >= 0.98


@pytest.mark.parametrize(
    ("arrays", "fragment"),
    [
        ({"pixels": np.ones((8, 1, 32, 32), np.float32)}, "image"),
        ({"image": np.ones((8, 1, 16, 16), np.float32)}, "16"),
        ({"image": np.full((8, 1, 32, 32), np.nan, np.float32)}, "NaN"),
        ({"image": np.ones((0, 1, 32, 32), np.float32)}, "no samples"),
    ],
    ids=["wrong name", "wrong shape", "NaN", "too few samples"],
)
def test_bad_calibration_data_exits_2_with_one_line(
    exported_sample: Callable[[str], Path], tmp_path: Path, arrays: dict, fragment: str
) -> None:
    data = tmp_path / "calibration.npz"
    np.savez(data, **arrays)
    fp32 = exported_sample("digits_cnn") / "model.onnx"

    result = CliRunner().invoke(
        app,
        [
            "quantize",
            str(fp32),
            "--calibration",
            str(data),
            "-o",
            str(tmp_path / "out"),
            "--no-speed-check",
        ],
    )

    assert result.exit_code == 2, result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert not (tmp_path / "out" / "model.onnx").exists()


def manifest_of(path: Path) -> dict[str, Any]:
    return json.loads(path.with_name(path.name + ".dlopt.json").read_text())


def test_openvino_int8_cnn_keeps_accuracy_and_is_byte_identical(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    fp32 = exported_sample("digits_cnn") / "model.onnx"
    options = QuantizeOptions(
        mode="static",
        target="openvino",
        calibration=CNN_CALIBRATION,
        calibration_size=64,
        evaluation="sample:digits_cnn:evaluation",
    )

    first = quantize_model(str(fp32), tmp_path / "a", options)
    quantize_model(str(fp32), tmp_path / "b", options)

    assert first.path.name == "model.xml"
    assert_int8_ir(first.path)
    for name in ("model.xml", "model.bin"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    manifest = manifest_of(first.path)
    assert manifest["format"] == "openvino_ir" and manifest["precision"] == "int8"
    assert manifest["recipe"]["api"] == "nncf.quantize"
    assert manifest["recipe"]["compile_properties"]["INFERENCE_PRECISION_HINT"] == "f32"
    drift = manifest["checks"]["drift"]
    assert drift["samples"] == 300 and drift["accuracy_drop"] <= 0.01


@pytest.mark.parametrize(
    ("mode", "target", "cosine_floor", "agreement_floor"),
    [
        # Static ORT alone gave cosine 0.968 and agreement 0.93 on 300 sequences here (4.3%
        # accuracy lost): the default budget (cosine >= 0.99, agreement >= 0.99) sends it
        # through the fallback (10 nodes back to float: cosine 0.9989, agreement 0.99).
        # NNCF: cosine 0.998, agreement 0.993; FP16: cosine 1.0.
        ("static", "onnxruntime", 0.99, 0.99),
        ("static", "openvino", 0.995, 0.98),
        ("fp16", "onnxruntime", 0.999, 0.99),
    ],
)
def test_transformer_variants_stay_above_their_floors(
    exported_sample: Callable[[str], Path],
    tmp_path: Path,
    mode: str,
    target: str,
    cosine_floor: float,
    agreement_floor: float,
) -> None:
    fp32 = exported_sample("text_transformer") / "model.onnx"
    options = QuantizeOptions(
        mode=mode,
        target=target,
        calibration="sample:text_transformer:calibration" if mode == "static" else None,
        calibration_size=100,
        evaluation="sample:text_transformer:evaluation",
    )

    result = quantize_model(str(fp32), tmp_path / "q", options)

    drift = manifest_of(result.path)["checks"]["drift"]
    assert drift["cosine"] >= cosine_floor and drift["top1_agreement"] >= agreement_floor, drift
    assert drift["budget_source"] == "default" and drift["within_budget"] is True
    if target == "openvino":
        assert manifest_of(result.path)["recipe"]["nncf_model_type"] == "transformer"
        assert_int8_ir(result.path)
    elif mode == "static":
        # Graphs with attention take NNCF's transformer scheme, activations made unsigned.
        recipe = manifest_of(result.path)["recipe"]
        assert recipe["tool"] == "nncf (ONNX backend)" and recipe["activations_made_unsigned"]
        assert_static_int8_onnx(result.path)
    else:
        assert_fp16_onnx(result.path)


def test_tensorrt_target_writes_symmetric_int8_qdq(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    import onnx
    from onnx import numpy_helper

    fp32 = exported_sample("digits_cnn") / "model.onnx"
    options = QuantizeOptions(target="tensorrt", calibration=CNN_CALIBRATION, calibration_size=32)

    result = quantize_model(str(fp32), tmp_path / "q", options)

    graph = onnx.load(str(result.path)).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    zero_points = [
        initializers[node.input[2]]
        for node in graph.node
        if node.op_type == "QuantizeLinear" and len(node.input) > 2
    ]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert manifest_of(result.path)["recipe"]["activation_type"] == "QInt8"
    assert_static_int8_onnx(result.path)


def test_openvino_fp16_and_bf16_irs_record_their_precision(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    fp32 = exported_sample("digits_cnn") / "model.onnx"
    sizes = {}
    for mode, hint in (("fp16", "f32"), ("bf16", "bf16")):
        result = quantize_model(
            str(fp32), tmp_path / mode, QuantizeOptions(mode=mode, target="openvino")
        )
        manifest = manifest_of(result.path)
        assert manifest["precision"] == mode
        assert manifest["recipe"]["compile_properties"]["INFERENCE_PRECISION_HINT"] == hint
        assert manifest["checks"]["drift"]["cosine"] >= 0.999
        if mode == "fp16":
            assert_fp16_ir(result.path)
        sizes[mode] = (tmp_path / mode / "model.bin").stat().st_size
    assert sizes["fp16"] < 0.6 * sizes["bf16"]  # FP16 weights on disk, bf16 only at run time


def test_torch_target_is_dynamic_int8_torchscript_marked_deprecated(tmp_path: Path) -> None:
    import torch

    result = quantize_model(
        sample_source("text_transformer"),
        tmp_path / "q",
        QuantizeOptions(mode="dynamic", target="torch", evaluation_size=64),
        weights=sample_weights("text_transformer"),
    )

    manifest = manifest_of(result.path)
    assert manifest["format"] == "torchscript" and manifest["precision"] == "int8"
    assert "deprecated" in manifest["recipe"]["deprecated"]
    assert manifest["recipe"]["quantized_layers"] > 0
    assert manifest["checks"]["drift"]["cosine"] >= 0.99
    scripted = torch.jit.load(str(result.path))
    assert isinstance(scripted, torch.jit.ScriptModule)
    # The saved program calls torch's dynamic INT8 kernels (a copy would call aten::linear).
    assert "quantized::linear_dynamic" in str(scripted.inlined_graph)


@pytest.fixture(scope="module")
def outlier_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """OutlierNet as ONNX, with calibration and evaluation data from its input distribution."""
    from dlopt.optimize.export import ExportOptions, export_model

    folder = tmp_path_factory.mktemp("outlier")
    export_model(OUTLIER_NET, folder, options=ExportOptions(("onnx",)))
    for name, seed, rows in (("calibration", 1, 64), ("evaluation", 2, 128)):
        inputs = np.random.default_rng(seed).standard_normal((rows, 16)).astype(np.float32)
        np.savez(folder / f"{name}.npz", x=inputs)
    return folder / "model.onnx", str(folder / "calibration.npz"), str(folder / "evaluation.npz")


@pytest.mark.parametrize("target", ["onnxruntime", "openvino"])
def test_accuracy_aware_mode_returns_the_culprit_layers_to_float(
    outlier_case: tuple[Path, str, str], tmp_path: Path, target: str
) -> None:
    model, calibration, evaluation = outlier_case
    common = {
        "mode": "static",
        "target": target,
        "calibration": calibration,
        "evaluation": evaluation,
    }

    plain = quantize_model(
        str(model), tmp_path / "plain", QuantizeOptions(**common, max_drift=("none",))
    )
    aware = quantize_model(
        str(model), tmp_path / "aware", QuantizeOptions(**common, max_drift=("cosine=0.99",))
    )
    default = quantize_model(str(model), tmp_path / "default", QuantizeOptions(**common))

    assert manifest_of(plain.path)["checks"]["drift"]["cosine"] < 0.5
    drift = manifest_of(aware.path)["checks"]["drift"]
    assert drift["cosine"] >= 0.99 and drift["within_budget"] is True
    # Without --max-drift the default budget (cosine >= 0.99) sends it through the same path.
    default_drift = manifest_of(default.path)["checks"]["drift"]
    assert default_drift["budget_source"] == "default" and default_drift["cosine"] >= 0.99
    if target == "onnxruntime":
        recipe = manifest_of(aware.path)["recipe"]
        # The hidden layer (whose output carries the outlier) and the head go back to float;
        # the first layer stays INT8.
        assert sorted(recipe["kept_float_for_budget"]) == ["node_Gemm_1", "node_linear_1"]
        assert [a["kept_float"] for a in drift["attempts"]] == [0, 1, 2]
        assert manifest_of(default.path)["recipe"]["kept_float_for_budget"]
        assert_static_int8_onnx(default.path)
    else:
        assert manifest_of(aware.path)["recipe"]["api"] == "nncf.quantize_with_accuracy_control"
        assert manifest_of(default.path)["recipe"]["api"] == "nncf.quantize_with_accuracy_control"
        assert_int8_ir(default.path)


def test_a_budget_that_cannot_be_met_exits_1_and_writes_nothing(
    outlier_case: tuple[Path, str, str], tmp_path: Path
) -> None:
    model, calibration, evaluation = outlier_case
    out = tmp_path / "out"
    args = ["quantize", str(model), "--mode", "static", "--calibration", calibration]
    args += ["--eval", evaluation]

    result = CliRunner().invoke(
        app, [*args, "--max-drift", "sqnr_db=200", "-o", str(out), "--no-speed-check"]
    )

    assert result.exit_code == 1, result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "sqnr_db >= 200" in lines[0], result.stderr
    assert not any(out.glob("model.onnx*")) and not any(out.glob(".dlopt-staging-*"))


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--target", "openvino", "--mode", "dynamic"], "no dynamic-INT8"),
        (["--mode", "bf16"], "no bf16 kernels"),
        (["--max-drift", "cosine=0.99"], "needs evaluation data"),
        (["--max-drift", "cosine>0.99", "--eval", "x.npz"], "METRIC=VALUE"),
        (["--max-drift", "cosine=1.5", "--eval", "x.npz"], "out of range"),
    ],
)
def test_bad_quantize_options_exit_2_with_one_line(
    exported_sample: Callable[[str], Path], tmp_path: Path, extra: list[str], fragment: str
) -> None:
    fp32 = exported_sample("digits_cnn") / "model.onnx"
    out = tmp_path / "out"

    result = CliRunner().invoke(
        app,
        ["quantize", str(fp32), "--calibration", CNN_CALIBRATION, "-o", str(out), *extra],
    )

    assert result.exit_code == 2, result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_dynamic_int8_cnn_leaves_convolutions_float_and_keeps_accuracy(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    import onnx

    fp32 = exported_sample("digits_cnn") / "model.onnx"
    options = QuantizeOptions(mode="dynamic", evaluation="sample:digits_cnn:evaluation")

    result = quantize_model(str(fp32), tmp_path / "q", options)

    assert_dynamic_int8_onnx(result.path)
    ops = {node.op_type for node in onnx.load(str(result.path)).graph.node}
    assert "Conv" in ops and "ConvInteger" not in ops  # ConvInteger ran 6x slower here
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear"}  # the dense head is INT8
    assert manifest_of(result.path)["checks"]["drift"]["accuracy_drop"] <= 0.01


def test_dynamic_budget_keeps_the_most_harmful_products_float(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    import onnx

    fp32 = exported_sample("text_transformer") / "model.onnx"
    options = QuantizeOptions(
        mode="dynamic",
        evaluation="sample:text_transformer:evaluation",
        evaluation_size=100,
        max_drift=("sqnr_db=42",),  # plain dynamic INT8 gave 38-39.5 dB here
    )

    result = quantize_model(str(fp32), tmp_path / "q", options)

    manifest = manifest_of(result.path)
    drift = manifest["checks"]["drift"]
    assert drift["attempts"][0]["sqnr_db"] < 42 <= drift["sqnr_db"]
    assert len(drift["attempts"]) <= 5  # bounded: the first try and at most four steps
    assert manifest["recipe"]["kept_float_for_budget"]
    ops = {node.op_type for node in onnx.load(str(result.path)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops  # still quantized


def test_the_graph_checks_reject_an_unquantized_copy(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    """What a quantizer that copied its input would write fails every graph check above."""
    fp32 = exported_sample("digits_cnn") / "model.onnx"
    ir = fp32_ir(fp32, tmp_path / "ir")

    for check, copy in (
        (assert_static_int8_onnx, fp32),
        (assert_dynamic_int8_onnx, fp32),
        (assert_fp16_onnx, fp32),
        (assert_int8_ir, ir),
        (assert_fp16_ir, ir),
    ):
        with pytest.raises(AssertionError):
            check(copy)
