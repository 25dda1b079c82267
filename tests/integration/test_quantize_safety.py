"""`dlopt quantize` is safe by default (issue 14): a default drift budget that a broken INT8
model cannot pass (exit 1, nothing written), `--max-drift none` to opt out (poor drift in red),
drift lines that say where they were measured and leave out top-1 agreement for embeddings,
the same rule in gate recipes, one-line refusals of ONNX files quantize cannot read, and the
speed check with both of its outcomes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.errors import BudgetNotMetError
from tests.integration.conftest import ROOT, SAMPLES

QUANTIZE_MODELS = ROOT / "tests" / "fixtures" / "quantize_models.py"
CNN_CALIBRATION = f"{SAMPLES / 'digits_cnn' / 'data.py'}:calibration"


def _export(factory: str, folder: Path, inputs: tuple[str, ...] = ()) -> Path:
    from dlopt.optimize.export import ExportOptions, export_model

    export_model(f"{QUANTIZE_MODELS}:{factory}", folder, inputs, options=ExportOptions(("onnx",)))
    return folder / "model.onnx"


@pytest.fixture(scope="module")
def one_product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export("one_product_outlier_net", tmp_path_factory.mktemp("one_product"))


@pytest.fixture(scope="module")
def embedding(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export("embedding_net", tmp_path_factory.mktemp("embedding"))


def quantize(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, ["quantize", *args], env=env)


def one_line(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_over_the_default_budget_exits_1_and_writes_nothing(
    one_product: Path, tmp_path: Path, mode: str
) -> None:
    out = tmp_path / "out"

    result = quantize(
        str(one_product), "--mode", mode, "--calibration", "synthetic", "-o", str(out),
        "--no-speed-check",
    )  # fmt: skip

    assert result.exit_code == 1, result.stdout + result.stderr
    line = one_line(result)
    assert "misses the default budget cosine >= 0.99" in line
    assert "on random inputs" in line and "--max-drift none" in line
    assert not out.exists() or not any(out.iterdir())


def test_max_drift_none_writes_it_and_prints_the_poor_drift_in_red(
    one_product: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"

    result = quantize(
        str(one_product), "--mode", "dynamic", "--max-drift", "none", "-o", str(out),
        "--no-speed-check", env={"FORCE_COLOR": "1", "COLUMNS": "200"},
    )  # fmt: skip

    assert result.exit_code == 0, result.stdout + result.stderr
    assert (out / "model.onnx").is_file()
    assert "\x1b[1;31mPOOR\x1b[0m" in result.stdout
    assert "misses the default budget" in result.stdout
    drift = json.loads((out / "model.onnx.dlopt.json").read_text())["checks"]["drift"]
    assert drift["budget_source"] == "none" and drift["budgets"] == []
    assert drift["cosine"] < 0.99


def test_embedding_drift_leaves_out_top1_and_says_its_inputs_were_random(
    embedding: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"

    result = quantize(
        str(embedding), "--mode", "dynamic", "-o", str(out), "--no-speed-check",
        env={"COLUMNS": "200"},
    )  # fmt: skip

    assert result.exit_code == 0, result.stdout + result.stderr
    drift_line = next(line for line in result.stdout.splitlines() if "drift against" in line)
    assert "random inputs" in drift_line and "cosine" in drift_line
    assert "top1_agreement" not in drift_line
    assert "within the default budget: cosine >= 0.99" in result.stdout
    drift = json.loads((out / "model.onnx.dlopt.json").read_text())["checks"]["drift"]
    assert drift["random_inputs"] is True and "top1_agreement" not in drift
    assert drift["budget_source"] == "default" and drift["within_budget"] is True


def test_gate_recipes_keep_the_default_budget_unless_they_opt_out(
    one_product: Path, tmp_path: Path
) -> None:
    from dlopt.gate.config import load_gate_config
    from dlopt.gate.recipes import make_variant

    config_path = tmp_path / "dlopt.toml"
    config_path.write_text(
        f'[model]\nsource = "{QUANTIZE_MODELS}:one_product_outlier_net"\n'
        "[[variants]]\nname = 'int8'\nquantize = { mode = 'dynamic' }\n"
        "[[variants]]\nname = 'int8-unchecked'\n"
        "quantize = { mode = 'dynamic', max_drift = ['none'] }\n"
    )
    config = load_gate_config(config_path)
    checked, unchecked = config.variants

    with pytest.raises(BudgetNotMetError, match="misses the default budget"):
        make_variant(checked, one_product, config, tmp_path / "int8")
    made = make_variant(unchecked, one_product, config, tmp_path / "int8-unchecked")

    assert not (tmp_path / "int8" / "model.onnx").exists()
    assert made.is_file()


def _unknown_domain(folder: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example.custom")
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example.custom", 1)]
    path = folder / "custom.onnx"
    graph = helper.make_graph([node], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


def _short_external_data(folder: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [weight]
    )
    path = folder / "short.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(
        model, str(path), save_as_external_data=True, location="short.onnx.data", size_threshold=0
    )
    data = folder / "short.onnx.data"
    data.write_bytes(data.read_bytes()[:20])  # a copy cut short
    return path


@pytest.mark.parametrize(
    ("make", "fragment", "fix"),
    [
        (
            _unknown_domain,
            "it uses ops of a domain ONNX Runtime does not know (com.example.custom:Frobnicate)",
            "re-export it without custom ops",
        ),
        (
            _short_external_data,
            "its external data is incomplete",
            "Copy the model's external data file again in full",
        ),
    ],
    ids=["unknown op domain", "external data too short"],
)
@pytest.mark.parametrize(
    "target_mode",
    [
        ("onnxruntime", "static"),
        ("onnxruntime", "dynamic"),
        ("onnxruntime", "fp16"),
        ("openvino", "static"),
        ("openvino", "bf16"),
        ("tensorrt", "static"),
    ],
    ids=lambda pair: "-".join(pair),
)
def test_onnx_quantize_cannot_read_exits_2_with_one_line(
    tmp_path: Path, make: Any, fragment: str, fix: str, target_mode: tuple[str, str]
) -> None:
    model = make(tmp_path)
    target, mode = target_mode
    out = tmp_path / "out"

    result = quantize(
        str(model), "--target", target, "--mode", mode, "--calibration", "synthetic",
        "-o", str(out), "--no-speed-check",
    )  # fmt: skip

    assert result.exit_code == 2, result.stdout + result.stderr
    line = one_line(result)
    assert f"cannot quantize {model}: {fragment}" in line
    assert fix in line
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    ("target", "where"),
    [("onnxruntime", "both on onnxruntime"), ("openvino", "both on openvino")],
)
def test_speed_check_reports_the_speedup_on_the_target_runtime(
    exported_sample: Any, tmp_path: Path, target: str, where: str
) -> None:
    digits = exported_sample("digits_cnn") / "model.onnx"

    result = quantize(
        str(digits), "--target", target, "--calibration", CNN_CALIBRATION,
        "--calibration-size", "64", "-o", str(tmp_path / "out"), env={"COLUMNS": "200"},
    )  # fmt: skip

    assert result.exit_code == 0, result.stdout + result.stderr
    # (--mode auto's table of candidates comes first: the check's own line starts "speedup: ")
    speed = next(line for line in result.stdout.splitlines() if line.startswith("speedup: "))
    # INT8 ran 3.1-3.4x FP32 on this CNN here (README, Performance): well clear of 1.
    assert where in speed, result.stdout
    assert "NOT FASTER" not in result.stdout and "FP32 on onnxruntime" not in result.stdout
    # The check's bench scratch (job files, worker logs, raw outputs) is not left in the output.
    assert not [path.name for path in (tmp_path / "out").iterdir() if path.is_dir()]


def test_speed_check_says_not_faster_when_int8_is_slower(tmp_path: Path) -> None:
    deep = _export("deep_narrow_net", tmp_path / "fp32")

    result = quantize(
        str(deep), "--mode", "dynamic", "--max-drift", "none", "-o", str(tmp_path / "out"),
        env={"COLUMNS": "200"},
    )  # fmt: skip

    assert result.exit_code == 0, result.stdout + result.stderr
    # 24 products of 8x8: dynamic INT8 adds a quantize, an integer product and a rescale to
    # each; it ran about 2x slower than FP32 here.
    line = next(line for line in result.stdout.splitlines() if "NOT FASTER" in line)
    assert "both on onnxruntime" in line
