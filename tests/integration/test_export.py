"""`dlopt export` end to end on real torch, onnx and ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from dlopt.errors import ExportError, SourceError
from dlopt.optimize.export import ExportOptions, export_model
from dlopt.specs import parse_input_specs, random_feed

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TINY = FIXTURES / "tiny_models.py"
TWO_INPUTS = [
    "input_ids:batch=2xseq=6:int64:0..49",
    "attention_mask:batch=2xseq=6:int64:1..1",
]


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_dict_outputs_get_stable_names_in_both_formats(tmp_path: Path, exporter: str) -> None:
    results = export_model(
        f"{TINY}:dict_output_net", tmp_path, options=ExportOptions(exporter=exporter)
    )

    assert [result.format for result in results] == ["onnx", "torchscript"]
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    assert [output.name for output in graph.output] == ["logits", "extras.0", "extras.1"]
    manifest = json.loads((tmp_path / "model.onnx.dlopt.json").read_text())
    assert manifest["status"] == "ok"
    assert manifest["outputs"] == ["logits", "extras.0", "extras.1"]
    assert manifest["inputs"][0]["shape"] == ["batch", 4]
    assert len(manifest["sha256"]) == 64 and manifest["size_bytes"] > 0
    assert "torch" in manifest["tool_versions"]
    for result in results:
        # batch 2 (example), 1 (smaller), 4 (larger) x three outputs
        assert len(result.parity.rows) == 9 and result.parity.passed


def test_onnx_has_named_dynamic_axes_and_runs_at_other_sizes(tmp_path: Path) -> None:
    export_model(
        f"{TINY}:two_input_net", tmp_path, TWO_INPUTS, options=ExportOptions(formats=("onnx",))
    )
    model = onnx.load(str(tmp_path / "model.onnx"))
    dims = [
        [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in model.graph.input
    ]

    assert dims == [["batch", "seq"], ["batch", "seq"]]
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    specs = parse_input_specs(TWO_INPUTS)
    (logits,) = session.run(None, random_feed(specs, {"batch": 5, "seq": 11}))
    assert logits.shape == (5, 2)


def test_traced_baked_shape_fails_parity_and_is_marked_failed(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as caught:
        export_model(
            f"{TINY}:baked_shape_net", tmp_path, options=ExportOptions(formats=("torchscript",))
        )

    message = caught.value.one_line()
    assert "torchscript export diverges" in message and "x[" in message
    manifest = json.loads((tmp_path / "model.ts.dlopt.json").read_text())
    assert manifest["status"] == "failed"
    assert not manifest["checks"]["parity"]["passed"]


def test_parity_detects_a_wrong_export(tmp_path: Path) -> None:
    import torch

    from dlopt.optimize.export.parity import check_parity
    from dlopt.torch_io import run_torch

    specs = parse_input_specs(["x:batch=2x4"])
    model = torch.nn.Linear(4, 3).eval()
    perturbed = torch.nn.Linear(4, 3).eval()
    perturbed.load_state_dict(model.state_dict())
    with torch.no_grad():
        perturbed.bias.add_(1e-2)

    same = check_parity(
        lambda f: run_torch(model, f, specs), lambda f: run_torch(model, f, specs), specs
    )
    different = check_parity(
        lambda f: run_torch(model, f, specs), lambda f: run_torch(perturbed, f, specs), specs
    )

    assert same.passed
    assert not different.passed and different.first_failure() is not None


def test_failed_export_leaves_earlier_artifacts_untouched(tmp_path: Path) -> None:
    export_model(f"{TINY}:dict_output_net", tmp_path, options=ExportOptions(formats=("onnx",)))
    before = (tmp_path / "model.onnx").read_bytes()

    with pytest.raises(SourceError) as caught:
        export_model(f"{TINY}:not_a_module", tmp_path, options=ExportOptions(formats=("onnx",)))

    assert "not_a_module() returned a int, not a torch.nn.Module" in caught.value.message

    assert (tmp_path / "model.onnx").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.dlopt.json"]


def test_torchscript_output_matches_torch(tmp_path: Path) -> None:
    import torch

    from dlopt.sources import load_torch_model
    from dlopt.torch_io import run_torch

    export_model(
        f"{TINY}:two_input_net",
        tmp_path,
        TWO_INPUTS,
        options=ExportOptions(formats=("torchscript",)),
    )
    specs = parse_input_specs(TWO_INPUTS)
    feed = random_feed(specs, {"batch": 3, "seq": 9}, seed=7)
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    original = load_torch_model(f"{TINY}:two_input_net").module

    np.testing.assert_allclose(
        run_torch(scripted, feed, specs, names=["output"])["output"],
        run_torch(original, feed, specs)["output"],
        rtol=1e-5,
        atol=1e-6,
    )


def test_exported_program_source_exports_with_parity(tmp_path: Path) -> None:
    import torch

    from dlopt.sources import load_torch_model

    model = load_torch_model(f"{TINY}:two_input_net").module
    feed = random_feed(parse_input_specs(TWO_INPUTS))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    program = torch.export.export(
        model,
        (torch.from_numpy(feed["input_ids"]), torch.from_numpy(feed["attention_mask"])),
        dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
    )
    torch.export.save(program, str(tmp_path / "model.pt2"))

    results = export_model(str(tmp_path / "model.pt2"), tmp_path / "out", TWO_INPUTS)

    assert all(result.parity.passed for result in results)
    assert (tmp_path / "out" / "model.onnx").is_file() and (tmp_path / "out" / "model.ts").is_file()
