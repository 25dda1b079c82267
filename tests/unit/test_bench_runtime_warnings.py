"""A bench row says when a variant runs on a runtime it was not made for, and when its outputs
there drift below quantize's default budget."""

from __future__ import annotations

from dlopt.harness.bench import _runtime_warnings
from dlopt.harness.results import BenchRow


def bench_row(backend: str, cosine: float) -> BenchRow:
    row = BenchRow("int8/model.onnx", backend, "ok")
    row.drift = {"logits": {"cosine": cosine}}
    return row


def test_a_variant_on_another_runtime_gets_a_warning() -> None:
    manifest = {"recipe": {"runtime": "onnxruntime"}}
    on_openvino, on_ort = bench_row("openvino", 0.80), bench_row("onnxruntime", 0.995)

    _runtime_warnings(on_openvino, manifest)
    _runtime_warnings(on_ort, manifest)

    made_for = "runtime: made for onnxruntime, benched on openvino"
    assert any(made_for in warning for warning in on_openvino.warnings)
    assert any("below the default budget" in w for w in on_openvino.warnings)
    assert on_ort.warnings == []


def test_the_reference_and_failed_rows_are_left_alone() -> None:
    reference = bench_row("openvino", 1.0)
    reference.is_reference = True
    failed = BenchRow("x.onnx", "openvino", "failed")

    _runtime_warnings(reference, {"recipe": {"runtime": "onnxruntime"}})
    _runtime_warnings(failed, {"recipe": {"runtime": "onnxruntime"}})

    assert reference.warnings == [] and failed.warnings == []


def test_the_gate_markdown_lists_runtime_warnings() -> None:
    from dlopt.report.markdown import render_markdown

    row = {
        "variant": "int8-dynamic",
        "backend": "openvino",
        "status": "ok",
        "bench": {},
        "runtime_warnings": ["made for onnxruntime, benched on openvino"],
    }
    report = {"verdict": "pass", "exit_code": 0, "gates": [], "rows": [row]}

    text = render_markdown(report)

    assert "⚠ int8-dynamic on openvino: made for onnxruntime, benched on openvino" in text
