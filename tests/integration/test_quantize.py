"""`dlopt quantize` (ONNX Runtime target) on the samples: accuracy, drift, determinism, errors."""

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
from tests.integration.conftest import SAMPLES

CNN_CALIBRATION = f"{SAMPLES / 'digits_cnn' / 'data.py'}:calibration"


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
