"""hf:, torchvision: and text: references, the optional-extra error, zoo-style ONNX
normalization, index paths kept float, scale-relative parity, bench row labels, CLI choices."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dlopt.errors import DataError, SourceError


def _hf_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "minibert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    return folder


def test_hf_and_torchvision_sources_parse_without_importing_them(tmp_path: Path) -> None:
    from dlopt.hf_source import with_task
    from dlopt.sources import parse_source

    folder = _hf_folder(tmp_path)
    ref = parse_source(f"hf:{folder}#causal-lm")
    assert (ref.kind, ref.builder, ref.path, ref.attribute) == (
        "factory",
        "hf",
        folder,
        "causal-lm",
    )
    assert with_task(f"hf:{folder}", "feature-extraction") == f"hf:{folder}#feature-extraction"
    vision = parse_source("torchvision:resnet18")
    assert (vision.builder, vision.attribute) == ("torchvision", "resnet18")
    with pytest.raises(SourceError, match="unknown task"):
        parse_source(f"hf:{folder}#translation")
    with pytest.raises(SourceError, match=r"no config\.json"):
        parse_source(f"hf:{tmp_path}")
    with pytest.raises(SourceError, match="names no torchvision model"):
        parse_source("torchvision:../x")
    with pytest.raises(SourceError, match="--task"):
        with_task("model.py:make", "causal-lm")


def test_a_missing_extra_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from dlopt.cli import app

    folder = _hf_folder(tmp_path)
    (folder / "model.safetensors").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails: not installed
    result = CliRunner().invoke(app, ["export", f"hf:{folder}", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "dlopt[hf]" in lines[0] and "pip install" in lines[0]


def test_text_data_finds_the_tokenizer_from_the_model(tmp_path: Path) -> None:
    from dlopt.text_data import resolve_tokenizer, split_text_source

    folder = _hf_folder(tmp_path)
    sentences = tmp_path / "s.txt"
    sentences.write_text("one\ntwo\n")
    assert resolve_tokenizer(f"text:{sentences}", f"hf:{folder}#causal-lm") == (
        f"text:{sentences}@{folder}"
    )
    exported = tmp_path / "model.onnx"
    exported.write_bytes(b"\x08\x07")
    manifest = {"format": "onnx", "file": "model.onnx", "source": {"reference": f"hf:{folder}"}}
    (tmp_path / "model.onnx.dlopt.json").write_text(json.dumps(manifest))
    assert resolve_tokenizer(f"text:{sentences}", str(exported)).endswith(f"@{folder}")
    assert resolve_tokenizer("data.npz", str(exported)) == "data.npz"
    assert split_text_source(f"text:{sentences}@{folder}") == (sentences, folder)
    with pytest.raises(DataError, match="needs a tokenizer"):
        resolve_tokenizer(f"text:{sentences}", "model.py:make")
    with pytest.raises(DataError, match=r"not a \.txt or \.jsonl"):
        split_text_source(f"text:{exported}")


def test_scale_relative_tolerance_follows_the_output_size() -> None:
    from dlopt.optimize.export.parity import Tolerance, check_parity
    from dlopt.specs import parse_input_specs

    specs = parse_input_specs(["x:1x100"])
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((1, 100)).astype("float32") * 0.04

    def reference(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": feed["x"] * 50}  # logits of size ~50, like an ImageNet head

    def candidate(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": feed["x"] * 50 + noise}  # FP16-like error: 1e-3 of the scale

    assert not check_parity(reference, candidate, specs, Tolerance(2e-2, 0.0)).passed
    relative = check_parity(reference, candidate, specs, Tolerance(5e-3, 0.0, True))
    assert relative.passed and relative.rows[0].atol > 0.1

    def wrong(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": -feed["x"] * 50}

    assert not check_parity(reference, wrong, specs, Tolerance(5e-3, 1e-2, True)).passed


def test_bench_rows_are_named_by_what_tells_them_apart() -> None:
    from dlopt.harness.bench_report import model_labels

    labels = model_labels(["out/cnn/model.onnx", "out/cnn-int8/model.onnx", "x/net.onnx"])
    assert labels == {
        "out/cnn/model.onnx": "cnn/model.onnx",
        "out/cnn-int8/model.onnx": "cnn-int8/model.onnx",
        "x/net.onnx": "net.onnx",
    }


def test_nodes_that_compute_indices_stay_float(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from dlopt.optimize.quantize.index_paths import index_computing_nodes

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
            helper.make_node("Log", ["positions"], ["log"], name="log"),
            helper.make_node("Mul", ["log", "scale"], ["scaled"], name="scale_buckets"),
            helper.make_node("Cast", ["scaled"], ["buckets"], name="to_int", to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "buckets"], ["bias"], name="lookup"),
            helper.make_node("Add", ["h", "bias"], ["y"], name="add"),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4]),
            helper.make_tensor_value_info("positions", TensorProto.FLOAT, [4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.1] * 16),
            helper.make_tensor("scale", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("table", TensorProto.FLOAT, [8, 4], [0.5] * 32),
        ],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert set(index_computing_nodes(path)) == {"log", "scale_buckets", "to_int"}


def test_quantize_choices_match_the_options_and_help_fits_80_columns() -> None:
    from typer.testing import CliRunner

    from dlopt.cli import app
    from dlopt.commands import quantize as command
    from dlopt.optimize.quantize import options

    assert {c.value for c in command.ModeChoice} == set(options.MODES)
    assert {c.value for c in command.TargetChoice} == set(options.TARGETS)
    assert {c.value for c in command.MethodChoice} == set(options.METHODS)
    assert {c.value for c in command.ModelTypeChoice} == set(options.MODEL_TYPES)
    runner = CliRunner()
    text = runner.invoke(app, ["quantize", "--help"], env={"COLUMNS": "80"}).output
    assert "static|dynamic|fp16|bf16" in text and "<str>        static" not in text
    for name in ("export", "quantize", "prune", "build", "bench", "gate", "report", "backends"):
        output = runner.invoke(app, [name, "--help"], env={"COLUMNS": "80"}).output
        assert "…" not in output, name
        assert "Examples:" in output, name


def test_gate_config_resolves_hf_and_text_relative_to_the_config(tmp_path: Path) -> None:
    from dlopt.gate.config import parse_gate_config

    folder = _hf_folder(tmp_path)
    (tmp_path / "eval.jsonl").write_text('{"text": "a", "label": 0}\n')
    raw = {
        "model": {"source": "hf:minibert#sequence-classification"},
        "data": {"evaluation": "text:eval.jsonl"},
    }
    config = parse_gate_config(raw, tmp_path / "dlopt.toml")
    assert config.model.source == f"hf:{folder}#sequence-classification"
    assert config.data.evaluation == f"text:{tmp_path / 'eval.jsonl'}@{folder}"


def test_hf_folder_with_custom_code_is_refused_not_run(tmp_path: Path) -> None:
    """A config that needs the folder's own code (auto_map) is refused: trust_remote_code
    stays off, so no file of the folder runs."""
    from dlopt.sources import load_torch_model

    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "my-own", "auto_map": {"AutoConfig": "code.MyConfig"}})
    )
    (folder / "code.py").write_text("raise SystemExit('the folder code ran')\n")
    (folder / "model.safetensors").write_bytes(b"x")
    with pytest.raises(SourceError, match="custom code") as caught:
        load_torch_model(f"hf:{folder}")
    assert "runs no code from model folders" in caught.value.one_line()
