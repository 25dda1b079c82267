"""Task metrics (scikit-learn), classifier drift, and the bench JSON schema and Markdown."""

from __future__ import annotations

import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from dlopt.errors import ConfigError
from dlopt.harness.bench import BenchReport, BenchRow, BenchSettings
from dlopt.harness.bench_report import bench_schema, render_markdown
from dlopt.harness.drift import softmax_kl_divergence, top1_agreement
from dlopt.harness.latency import summarize
from dlopt.harness.metrics import compare_metrics, task_kind, task_metrics


def test_perfect_multiclass_logits_score_one() -> None:
    labels = np.array([0, 1, 2, 2, 1, 0])
    logits = np.eye(3)[labels] * 5.0

    metrics = task_metrics(logits, labels)

    assert metrics["accuracy"] == 1.0
    assert metrics["f1_macro"] == 1.0
    assert metrics["roc_auc"] == 1.0


def test_binary_single_score_uses_roc_auc_on_scores() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([-2.0, 0.5, 0.1, 3.0])  # one mistake at threshold 0, AUC 0.75

    metrics = task_metrics(scores, labels)

    assert metrics["accuracy"] == 0.75
    assert metrics["roc_auc"] == pytest.approx(0.75)


def test_regression_gives_mae_and_rmse() -> None:
    metrics = task_metrics(np.array([[1.0], [2.0], [4.0]]), np.array([1.0, 2.0, 2.0]))

    assert metrics == {"mae": pytest.approx(2 / 3), "rmse": pytest.approx(math.sqrt(4 / 3))}
    assert task_kind(np.zeros((3, 1)), np.array([5, 7, 9])) == "regression"


def test_compare_metrics_reports_the_change() -> None:
    compared = compare_metrics({"accuracy": 0.9}, {"accuracy": 0.95})

    assert compared["accuracy"]["change"] == pytest.approx(-0.05)
    assert compared["accuracy"]["higher_is_better"] is True


def test_classifier_drift_helpers() -> None:
    reference = np.array([[2.0, 0.0], [0.0, 2.0]])

    assert top1_agreement(reference, reference) == 1.0
    assert top1_agreement(reference[:, ::-1], reference) == 0.0
    assert softmax_kl_divergence(reference, reference) == pytest.approx(0.0, abs=1e-12)
    assert softmax_kl_divergence(reference[:, ::-1], reference) > 0.5


def test_settings_validate_themselves() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        BenchSettings(batch_size=0)
    with pytest.raises(ConfigError, match="backend"):
        BenchSettings(backends=())


def _report() -> BenchReport:
    ok = BenchRow("a.onnx", "onnxruntime", "ok", size_bytes=1000, samples=4)
    ok.latency = {**summarize([1_000_000] * 5, 1).to_dict(), "mode": "solo", "samples_ns": [1] * 5}
    ok.memory = {
        "rss_after_imports_bytes": 1,
        "peak_rss_after_imports_bytes": 1,
        "rss_after_load_bytes": 2,
        "peak_rss_after_load_bytes": 2,
        "peak_rss_bytes": 3,
    }
    ok.drift = {
        "output": {
            "max_abs_error": 0.1,
            "mean_abs_error": 0.01,
            "relative_l2_error": 0.02,
            "cosine": 0.99,
            "sqnr_db": None,
            "against": "ref.onnx on onnxruntime",
        }
    }
    ok.metrics = compare_metrics({"accuracy": 0.5}, {"accuracy": 0.6})
    failed = BenchRow("b.onnx", "openvino", "failed", reason="worker crashed: killed by SIGSEGV")
    settings = {
        "backends": ["onnxruntime"],
        "models": ["a.onnx"],
        "batch_size": 1,
        "threads": None,
        "iterations": None,
        "min_time_s": 2.0,
    }
    return BenchReport([ok, failed], settings, {"cpu": {}, "tool_versions": {}}, "2026-01-01")


def test_report_validates_against_the_schema_and_the_schema_catches_errors() -> None:
    data = _report().to_dict()

    jsonschema.validate(data, bench_schema())
    data["rows"][1]["status"] = "crashed"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, bench_schema())


def test_markdown_has_one_line_per_row_with_the_failure_reason() -> None:
    text = render_markdown(_report())

    assert "| a.onnx | onnxruntime | ok | 1.000 (1.000–1.000)" in text
    assert "failed: worker crashed: killed by SIGSEGV" in text
    assert "accuracy 0.5000 (-0.1000)" in text


def test_bench_markdown_and_json_survive_control_characters(tmp_path: Path) -> None:
    import json

    from dlopt.harness.bench_report import write_json

    report = _report()
    hostile = "\x1b[31mboom\x1b[0m \x00\x07 ]]> <script>x</script> | a|b"
    report.rows[1].reason = hostile
    report.rows[1].model = "m|\x1b.onnx"
    report.rows[0].warnings.append(hostile)

    text = render_markdown(report)
    write_json(report, tmp_path / "bench.json")

    assert not [char for char in text if ord(char) < 32 and char != "\n"]
    assert "<script>" not in text and "boom" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert {line.replace("\\|", "").count("|") for line in rows} == {14}  # 13 columns each
    loaded = json.loads((tmp_path / "bench.json").read_text())
    assert loaded["rows"][1]["reason"] == hostile  # kept, escaped by JSON
    assert "\x1b" not in (tmp_path / "bench.json").read_text()


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("auto", {"accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc"}),
        ("classification", {"accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc"}),
        ("regression", {"mae", "rmse"}),
        ("none", None),
    ],
)
def test_the_task_chooses_the_metrics(task: str, expected: set[str] | None, tmp_path: Path) -> None:
    from dlopt.harness.compare import compare_row
    from dlopt.harness.output_store import open_outputs, write_part

    labels = np.array([0, 1, 1, 0])  # one score per sample: binary logits, or a regression
    scores = np.array([[-2.0], [1.5], [0.5], [-0.5]], dtype=np.float32)
    outputs = open_outputs(write_part(tmp_path / "part", {"output": scores}, labels))
    row = BenchRow("m.onnx", "onnxruntime", "ok")

    compare_row(row, outputs, outputs, "m.onnx on onnxruntime", task)

    assert (set(row.metrics) if row.metrics else None) == expected


def test_classification_needs_class_indices() -> None:
    with pytest.raises(ValueError, match="not class indices"):
        task_metrics(np.ones((3, 2)), np.array([0.5, 1.0, 0.0]), "classification")
    assert task_metrics(np.eye(2)[[0, 1]], np.array([0.0, 1.0]), "classification")["accuracy"] == 1


def test_bench_settings_check_the_task_and_max_iterations() -> None:
    with pytest.raises(ConfigError, match="unknown task"):
        BenchSettings(task="ranking")
    with pytest.raises(ConfigError, match="max_iterations"):
        BenchSettings(max_iterations=0)
