"""OpenVINO IR builds of both samples at FP32, FP16 and INT8, run and benched for real."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dlopt.backends import get_backend
from dlopt.backends.base import LoadOptions
from dlopt.cli import app
from dlopt.data import open_data
from dlopt.errors import DataError
from dlopt.optimize.build import BuildOptions, build_engine
from tests.integration.conftest import sample_source, sample_weights

CALIBRATION_SIZE = 32
EVAL_LIMIT = 160
# INT8 may cost a little accuracy; FP32/FP16 IRs must match the FP32 ONNX.
MAX_ACCURACY_DROP = {"fp32": 0.0, "fp16": 0.005, "int8": 0.03}


def _accuracy(model: str, specs_from: str, data: str) -> tuple[float, np.ndarray]:
    with get_backend("openvino").load(model, LoadOptions(threads=1)) as session:
        logits, labels = [], []
        for batch in open_data(data, session.inputs, batch_size=32, limit=EVAL_LIMIT):
            outputs = session.run(batch.inputs)
            logits.append(next(iter(outputs.values())))
            assert batch.labels is not None
            labels.append(batch.labels)
    predictions = np.concatenate(logits).argmax(-1)
    return float((predictions == np.concatenate(labels)).mean()), predictions


@pytest.fixture(scope="module")
def built(
    exported_sample: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Path]:
    """Every (sample, precision) IR, built once from the sample's FP32 ONNX."""
    paths: dict[tuple[str, str], Path] = {}
    for sample in ("digits_cnn", "text_transformer"):
        onnx_path = exported_sample(sample) / "model.onnx"
        for precision in ("fp32", "fp16", "int8"):
            options = BuildOptions(
                "openvino",
                precision,
                calibration=f"sample:{sample}:calibration",
                calibration_size=CALIBRATION_SIZE,
            )
            folder = tmp_path_factory.mktemp(f"{sample}_ov_{precision}")
            paths[(sample, precision)] = build_engine(str(onnx_path), folder, options).path
    return paths


@pytest.mark.parametrize("sample", ["digits_cnn", "text_transformer"])
def test_ir_manifests_record_the_explicit_choices(
    built: dict[tuple[str, str], Path], sample: str
) -> None:
    manifests = {
        p: json.loads((built[(sample, p)].parent / "model.xml.dlopt.json").read_text())
        for p in ("fp32", "fp16", "int8")
    }
    for precision, manifest in manifests.items():
        assert manifest["format"] == "openvino_ir" and manifest["precision"] == precision
        assert manifest["status"] == "ok"
        properties = manifest["recipe"]["compile_properties"]
        assert properties["INFERENCE_PRECISION_HINT"] == "f32"
        assert properties["PERFORMANCE_HINT"] == "LATENCY"
        assert manifest["recipe"]["weights_compressed_to_fp16"] is (precision == "fp16")
        assert manifest["parent"]["sha256"]
    assert manifests["fp32"]["checks"]["parity"]["passed"]
    assert manifests["fp16"]["checks"]["parity"]["passed"]
    quantization = manifests["int8"]["recipe"]["quantization"]
    assert quantization["tool"] == "nncf"
    assert quantization["calibration"]["samples"] == CALIBRATION_SIZE
    expected_type = "transformer" if sample == "text_transformer" else None
    assert quantization["nncf_model_type"] == expected_type
    drift = manifests["int8"]["checks"]["calibration_drift"]["outputs"]
    assert min(row["cosine"] for row in drift.values()) > 0.95
    sizes = {p: manifests[p]["size_bytes"] for p in manifests}
    # FP16 weights halve the file; INT8 weights quarter it (roughly).
    assert sizes["fp16"] < 0.6 * sizes["fp32"]
    assert sizes["int8"] < 0.45 * sizes["fp32"]


@pytest.mark.parametrize("sample", ["digits_cnn", "text_transformer"])
def test_irs_keep_the_fp32_accuracy(
    built: dict[tuple[str, str], Path], exported_sample: Callable[[str], Path], sample: str
) -> None:
    data = f"sample:{sample}:evaluation"
    reference, reference_predictions = _accuracy(
        str(exported_sample(sample) / "model.onnx"), "", data
    )
    assert reference > 0.7  # the sample is trained
    for precision, budget in MAX_ACCURACY_DROP.items():
        accuracy, predictions = _accuracy(str(built[(sample, precision)]), "", data)
        assert accuracy >= reference - budget - 1e-9, (precision, accuracy, reference)
        if precision == "fp32":
            assert (predictions == reference_predictions).all()


def test_digits_irs_bench_against_the_onnx_reference(
    built: dict[tuple[str, str], Path], exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    from dlopt.harness.bench import BenchSettings, run_bench
    from dlopt.harness.latency import WarmupPolicy

    reference = str(exported_sample("digits_cnn") / "model.onnx")
    models = [reference] + [str(built[("digits_cnn", p)]) for p in ("fp32", "fp16", "int8")]
    settings = BenchSettings(
        backends=("openvino",),
        data="sample:digits_cnn:evaluation",
        reference=reference,
        batch_size=8,
        threads=1,
        iterations=20,
        eval_limit=128,
        warmup=WarmupPolicy(window_runs=3, max_runs=12),
        timeout_s=180,
    )
    report = run_bench(models, settings, tmp_path / "bench")
    for model in models[1:]:
        row = report.row(model, "openvino")
        assert row.status == "ok", row.reason
        assert row.drift is not None and row.metrics is not None
        drift = next(iter(row.drift.values()))
        assert drift["top1_agreement"] >= 0.97
        assert row.info["precision_hint"] == "f32"
    fp32_drift = next(iter(report.row(models[1], "openvino").drift.values()))  # type: ignore[union-attr]
    assert fp32_drift["max_abs_error"] < 1e-3


def test_static_reshape_and_a_torch_source(tmp_path: Path) -> None:
    options = BuildOptions("openvino", "fp32", shapes=("image:4x1x32x32",), static_shapes=True)
    result = build_engine(
        sample_source("digits_cnn"), tmp_path, options, weights=sample_weights("digits_cnn")
    )
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["recipe"]["converted_from"] == "torch"
    assert manifest["inputs"][0]["shape"] == [4, 1, 32, 32]
    assert manifest["checks"]["parity"]["passed"]
    with get_backend("openvino").load(str(result.path), LoadOptions(threads=1)) as session:
        batch = next(iter(open_data("sample:digits_cnn", session.inputs, batch_size=4)))
        assert next(iter(session.run(batch.inputs).values())).shape == (4, 10)


def test_int8_without_calibration_and_cli_round_trip(
    exported_sample: Callable[[str], Path], tmp_path: Path
) -> None:
    onnx_path = str(exported_sample("digits_cnn") / "model.onnx")
    with pytest.raises(DataError, match="calibration"):
        build_engine(onnx_path, tmp_path / "no_cal", BuildOptions("openvino", "int8"))
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app, ["build", onnx_path, "-b", "openvino", "-p", "fp16", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file()
    assert "wrote" in result.stdout
