"""The recommendation: the fastest variant passing every gate, by its interval's low end."""

from __future__ import annotations

from typing import Any

from dlopt.gate.recommend import recommend


def row(variant: str, low: float, high: float, backend: str = "onnxruntime") -> dict[str, Any]:
    ratio = (low + high) / 2
    return {
        "variant": variant,
        "backend": backend,
        "status": "ok",
        "speedup": {"ratio": ratio, "interval": {"low": low, "high": high}},
        "metrics": {"accuracy": 0.99 if variant == "fp32" else 0.98},
        "drift": {"cosine": 0.999},
        "model_size_mb": 1.5,
        "peak_rss_mb": 200.0,
        "latency_ms": {"p50": 1 / ratio},
    }


def gate(variant: str, verdict: str, name: str = "accuracy_drop_max", **extra: Any) -> dict:
    return {"variant": variant, "backend": "onnxruntime", "gate": name, "verdict": verdict, **extra}


ARTIFACTS = {"fp32": "fp32.onnx", "a": "a.onnx", "b": "b.onnx", "c": "c.onnx"}


def test_the_surest_speedup_wins_over_the_highest_point() -> None:
    rows = [row("fp32", 1, 1), row("a", 3.3, 3.7), row("b", 2.0, 5.4)]  # b's point is 3.7
    gates = [gate("fp32", "pass"), gate("a", "pass"), gate("b", "pass")]

    [entry] = recommend(rows, gates, ARTIFACTS)

    assert entry["status"] == "ship" and entry["variant"] == "a"
    assert entry["artifact"] == "a.onnx"
    assert entry["ties"] == ["b"]  # [2.0, 5.4] overlaps [3.3, 3.7]
    assert round(entry["accuracy_change"], 6) == -0.01


def test_a_variant_that_is_not_surely_faster_does_not_displace_fp32() -> None:
    rows = [row("fp32", 1, 1), row("a", 0.9, 2.5)]

    [entry] = recommend(rows, [gate("fp32", "pass"), gate("a", "pass")], ARTIFACTS)

    assert entry["variant"] == "fp32" and entry["speedup"] == 1.0


def test_failed_or_inconclusive_gates_and_failed_recipes_exclude_a_variant() -> None:
    rows = [row("fp32", 1, 1), row("a", 3, 4), row("b", 2, 2.5), row("c", 1.5, 1.6)]
    gates = [
        gate("a", "fail", measured=0.05, threshold=0.01, reason="0.05 > 0.01"),
        gate("b", "inconclusive", "speedup_min", measured=2.2, threshold=2.0),
        {"variant": "c", "backend": "-", "gate": "recipe", "verdict": "fail"},
    ]

    [entry] = recommend(rows, gates, ARTIFACTS)

    assert entry["variant"] == "fp32"
    miss = entry["nearest_miss"]
    assert miss["variant"] == "b"  # one gate off by 10% beats one off by 400% or a crash
    assert miss["failed"][0]["gate"] == "speedup_min"


def test_nothing_passing_names_the_nearest_miss_and_its_culprit_layers() -> None:
    rows = [row("fp32", 1, 1), row("a", 3, 4)]
    gates = [
        gate("fp32", "fail", "model_size_mb_max", measured=6.0, threshold=1.0),
        gate("a", "fail", measured=0.012, threshold=0.01, reason="0.012 > 0.01"),
    ]
    diagnoses = [{"variant": "a", "backend": "onnxruntime", "worst": [{"layer": "softmax"}]}]

    [entry] = recommend(rows, gates, ARTIFACTS, diagnoses)

    assert entry["status"] == "none passes"
    assert entry["nearest_miss"]["variant"] == "a"
    assert entry["nearest_miss"]["culprits"] == ["softmax"]


def test_one_entry_per_backend() -> None:
    rows = [row("fp32", 1, 1), row("fp32", 1, 1, "openvino"), row("a", 2, 3, "openvino")]
    gates = [gate("a", "pass") | {"backend": "openvino"}]

    entries = recommend(rows, gates, ARTIFACTS)

    assert [(e["backend"], e["variant"]) for e in entries] == [
        ("onnxruntime", "fp32"),
        ("openvino", "a"),
    ]


def test_a_variant_slower_than_fp32_or_below_the_default_budget_is_never_picked() -> None:
    """Even with every gate passing (a config without speed or cosine gates): dynamic-INT8 ONNX
    on OpenVINO ran 0.79-0.89x FP32, an ORT INT8 GPT-2 fell to cosine 0.80 there."""
    fp32 = row("fp32", 1, 1, "openvino")
    slower = row("a", 0.8, 0.9, "openvino")
    drifted = {**row("b", 3.0, 3.2, "openvino"), "drift": {"cosine": 0.80}}
    fine = row("c", 1.5, 1.6, "openvino")
    rows = [fp32, slower, drifted, fine]
    gates = [{**gate(name, "pass"), "backend": "openvino"} for name in ("fp32", "a", "b", "c")]

    [entry] = recommend(rows, gates, ARTIFACTS)

    assert entry["variant"] == "c"
    reasons = {item["variant"]: item["reason"] for item in entry["not_picked"]}
    assert set(reasons) == {"a", "b"}
    assert "slower than FP32 on openvino" in reasons["a"]
    assert "below the default budget" in reasons["b"]


def test_when_only_unfit_variants_pass_fp32_is_shipped() -> None:
    rows = [row("fp32", 1, 1), {**row("a", 3, 4), "drift": {"cosine": 0.95}}]

    [entry] = recommend(rows, [gate("fp32", "pass"), gate("a", "pass")], ARTIFACTS)

    assert entry["variant"] == "fp32" and entry["not_picked"][0]["variant"] == "a"
