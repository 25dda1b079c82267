"""The sample models: trained weights load, both formats export with parity, metrics hold."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.integration.conftest import SAMPLES

SAMPLE_NAMES = ["digits_cnn", "text_transformer", "diabetes_mlp"]


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_exports_to_both_formats_with_parity(
    name: str, exported_sample: Callable[[str], Path]
) -> None:
    folder = exported_sample(name)

    for file_name in ("model.onnx", "model.ts"):
        manifest = json.loads((folder / f"{file_name}.dlopt.json").read_text())
        assert manifest["status"] == "ok"
        parity = manifest["checks"]["parity"]
        assert parity["passed"]
        # the example shape plus a smaller and a larger size of every dynamic axis
        shapes = {row["shapes"] for row in parity["rows"]}
        assert len(shapes) >= 3
        assert manifest["source"]["weights_sha256"]


def test_digits_cnn_onnx_keeps_its_test_accuracy(exported_sample: Callable[[str], Path]) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("digits_data", SAMPLES / "digits_cnn" / "data.py")
    assert spec is not None and spec.loader is not None
    data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(data)
    session = ort.InferenceSession(
        str(exported_sample("digits_cnn") / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    correct = total = 0
    for batch in data.evaluation(batch_size=90):
        (logits,) = session.run(None, {"image": batch["image"]})
        correct += int((np.argmax(logits, 1) == batch["labels"]).sum())
        total += len(batch["labels"])

    assert total == 360
    assert correct / total >= 0.99  # the model card says 0.9944


def test_text_transformer_has_dict_output_named_logits(
    exported_sample: Callable[[str], Path],
) -> None:
    manifest = json.loads(
        (exported_sample("text_transformer") / "model.onnx.dlopt.json").read_text()
    )

    assert manifest["outputs"] == ["logits"]
    assert [spec["shape"] for spec in manifest["inputs"]] == [["batch", "seq"], ["batch", "seq"]]
    assert [spec["dtype"] for spec in manifest["inputs"]] == ["int64", "int64"]
