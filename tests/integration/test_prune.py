"""`dlopt prune` end to end: real torch-pruning, torch.nn.utils.prune, exports and ONNX Runtime.

The digits CNN sample is pruned once (50% of channels, 3 epochs of fine-tuning on one thread,
about 45 s on a quiet 2-core machine); the other tests use tiny models from
tests/fixtures/prune_models.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from dlopt.artifacts import sha256_file
from dlopt.cli import app
from dlopt.data import open_data
from dlopt.optimize.prune import PruneOptions, PruneResult, prune_model
from dlopt.specs import parse_input_specs
from tests.fixtures.prune_models import follows_two_four
from tests.integration.conftest import sample_source, sample_weights
from tests.integration.quantized_graphs import assert_static_int8_onnx

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TINY = FIXTURES / "prune_models.py"
DIGITS_DATA = Path(__file__).resolve().parents[2] / "models" / "digits_cnn" / "data.py"
FINETUNE_EPOCHS = 3


@pytest.fixture(scope="module")
def cnn_half(tmp_path_factory: pytest.TempPathFactory) -> PruneResult:
    """The CNN sample with half its channels pruned, fine-tuned for 3 epochs."""
    options = PruneOptions(
        amount=0.5,
        finetune=f"{DIGITS_DATA}:training",
        evaluate=f"{DIGITS_DATA}:evaluation",
        epochs=FINETUNE_EPOCHS,
        threads=1,  # on a shared 2-core machine one thread trains ~10x faster than two
    )
    folder = tmp_path_factory.mktemp("digits_cnn_pruned")
    return prune_model(
        sample_source("digits_cnn"), folder, weights=sample_weights("digits_cnn"), options=options
    )


def _onnx_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _onnx_accuracy(path: Path) -> float:
    session = _onnx_session(path)
    specs = parse_input_specs(["image:batch=1x1x32x32"])
    correct = total = 0
    for batch in open_data(f"{DIGITS_DATA}:evaluation", specs, batch_size=64):
        (logits,) = session.run(None, {"image": batch.inputs["image"]})
        assert batch.labels is not None
        correct += int((logits.argmax(-1) == batch.labels).sum())
        total += batch.size
    return correct / total


def test_structured_half_cuts_parameters_and_onnx_matches_pruned_torch(
    cnn_half: PruneResult,
) -> None:
    before, after = cnn_half.before, cnn_half.after

    assert after.parameters <= 0.6 * before.parameters
    assert after.macs <= 0.6 * before.macs
    assert cnn_half.kept_layers == ["fc"]
    onnx_path = cnn_half.output_dir / "model.onnx"
    ts_path = cnn_half.output_dir / "model.ts"
    assert {a.format: a.parity.passed for a in cnn_half.artifacts} == {
        "onnx": True,
        "torchscript": True,
    }
    # The saved ONNX is the pruned graph: its weights hold what the pruned model counts.
    initializers = onnx.load(str(onnx_path)).graph.initializer
    onnx_parameters = sum(int(np.prod(tensor.dims)) for tensor in initializers)
    assert onnx_parameters <= 0.6 * before.parameters
    # And on real images at another batch size it computes what the pruned TorchScript does.
    images = next(
        iter(
            open_data(
                f"{DIGITS_DATA}:evaluation",
                parse_input_specs(["image:batch=1x1x32x32"]),
                batch_size=24,
            )
        )
    ).inputs["image"]
    (onnx_logits,) = _onnx_session(onnx_path).run(None, {"image": images})
    with torch.inference_mode():
        torch_logits = torch.jit.load(str(ts_path))(torch.from_numpy(images))[0].numpy()
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4, rtol=1e-3)


def test_manifests_record_recipe_parent_and_report(cnn_half: PruneResult) -> None:
    for name in ("model.onnx", "model.ts"):
        manifest = json.loads((cnn_half.output_dir / f"{name}.dlopt.json").read_text())

        assert manifest["status"] == "ok"
        assert manifest["recipe"]["step"] == "prune"
        assert manifest["recipe"]["options"]["amount"] == 0.5
        assert manifest["recipe"]["before"]["parameters"] == cnn_half.before.parameters
        assert manifest["recipe"]["after"]["parameters"] == cnn_half.after.parameters
        assert manifest["recipe"]["finetune"]["epochs"] == FINETUNE_EPOCHS
        assert manifest["recipe"]["accuracy"]["after_finetune"] == pytest.approx(
            cnn_half.accuracy.after_finetune if cnn_half.accuracy else -1
        )
        assert manifest["parent"]["weights_sha256"] == sha256_file(sample_weights("digits_cnn"))
        assert manifest["sha256"] == sha256_file(cnn_half.output_dir / name)
    assert sorted(p.name for p in cnn_half.output_dir.iterdir()) == [
        "model.onnx",
        "model.onnx.dlopt.json",
        "model.ts",
        "model.ts.dlopt.json",
    ]


def test_finetuning_recovers_accuracy_to_within_one_percent(cnn_half: PruneResult) -> None:
    accuracy = cnn_half.accuracy
    assert accuracy is not None and accuracy.metric == "accuracy" and accuracy.samples == 360
    assert accuracy.before == pytest.approx(0.9944, abs=0.003)  # the sample's card

    assert accuracy.after_pruning < accuracy.before - 0.05  # pruning alone loses accuracy
    assert accuracy.after_finetune is not None
    assert accuracy.after_finetune >= accuracy.before - 0.01
    # What was saved is the fine-tuned model: ONNX Runtime gets the same accuracy.
    assert _onnx_accuracy(cnn_half.output_dir / "model.onnx") == pytest.approx(
        accuracy.after_finetune, abs=1 / 360
    )


def test_pruned_then_int8_quantized_runs_end_to_end(cnn_half: PruneResult, tmp_path: Path) -> None:
    from dlopt.optimize.quantize import QuantizeOptions, quantize_model

    options = QuantizeOptions(
        mode="static",
        calibration=f"{DIGITS_DATA}:calibration",
        evaluation=f"{DIGITS_DATA}:evaluation",
    )

    result = quantize_model(str(cnn_half.output_dir / "model.onnx"), tmp_path / "int8", options)

    assert_static_int8_onnx(result.path)
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["parent"]["sha256"] == sha256_file(cnn_half.output_dir / "model.onnx")
    assert manifest["checks"]["drift"]["within_budget"] is True  # the default budget
    assert cnn_half.accuracy is not None and cnn_half.accuracy.after_finetune is not None
    assert _onnx_accuracy(result.path) >= cnn_half.accuracy.after_finetune - 0.02


def test_unstructured_reaches_requested_sparsity_in_the_saved_model(tmp_path: Path) -> None:
    result = prune_model(
        f"{TINY}:tiny_res_concat_net",
        tmp_path,
        options=PruneOptions(method="unstructured", amount=0.7),
    )

    assert result.pruned_layers_sparsity == pytest.approx(0.7, abs=0.005)
    assert result.after.parameters == result.before.parameters  # shapes stay
    assert result.after.compressed_bytes < 0.6 * result.before.compressed_bytes
    assert any("no faster" in note for note in result.notes)
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    saved = dict(scripted.named_parameters())
    zeros = sum(int((saved[f"model.{name}.weight"] == 0).sum()) for name in ("block.0", "right"))
    total = sum(saved[f"model.{name}.weight"].numel() for name in ("block.0", "right"))
    assert 0.5 < zeros / total < 0.9  # global pruning: per-layer rates vary around 0.7
    assert int((saved["model.fc.weight"] == 0).sum()) == 0  # the output layer is kept


def test_two_four_prunes_every_eligible_layer_to_the_pattern(tmp_path: Path) -> None:
    result = prune_model(
        f"{TINY}:tiny_res_concat_net", tmp_path, options=PruneOptions(method="2:4")
    )

    assert result.skipped_layers == ["stem.0"]  # 3 input channels
    assert any("Ampere" in note for note in result.notes)
    saved = dict(torch.jit.load(str(tmp_path / "model.ts")).named_parameters())
    for name in ("block.0", "left", "right"):
        assert follows_two_four(saved[f"model.{name}.weight"]), name
    assert int((saved["model.stem.0.weight"] == 0).sum()) == 0
    assert result.pruned_layers_sparsity == pytest.approx(0.5)


def test_attention_heads_survive_structured_pruning(tmp_path: Path) -> None:
    result = prune_model(
        f"{TINY}:tiny_attention_net",
        tmp_path,
        input_specs=["tokens:batch=2xseq=5x8"],
        options=PruneOptions(amount=0.5, round_to=4),
    )

    assert result.after.parameters < result.before.parameters
    assert all(artifact.parity.passed for artifact in result.artifacts)
    shapes = {layer.name: layer.weight_shape for layer in result.after.layers}
    assert shapes["attention.out_proj"][0] % 4 == 0  # still splits into 4 heads
    assert shapes["hidden"][0] % 4 == 0  # round_to


def test_cli_prints_before_after_table_and_writes_artifacts(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "prune",
            f"{TINY}:tiny_res_concat_net",
            "--amount",
            "0.5",
            "--ignore",
            "left",
            "--per-layer",
            "-o",
            str(tmp_path),
        ],
    )

    assert result.exit_code == 0, result.output
    assert "parameters" in result.output and "MACs per sample" in result.output
    assert "per layer" in result.output
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "model.ts").is_file()
    manifest = json.loads((tmp_path / "model.onnx.dlopt.json").read_text())
    layers = {row["name"]: row["weight_shape"] for row in manifest["recipe"]["after"]["layers"]}
    assert layers["left"][0] == 16  # ignored: its output channels stay
    assert layers["block.0"][0] == 8  # the residual group is halved


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["tiny_res_concat_net", "--amount", "1.5"], "amount 1.5 is outside (0, 1)"),
        (["tiny_res_concat_net", "--ignore", "layer9"], "'layer9' names no layer"),
        (["hard_coded_reshape_net", "--amount", "0.5"], "no longer runs"),
        (["tiny_res_concat_net", "--importance", "taylor"], "needs gradients"),
    ],
)
def test_cli_rejects_bad_requests_with_exit_2(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    factory, *options = arguments

    result = CliRunner().invoke(app, ["prune", f"{TINY}:{factory}", *options, "-o", str(tmp_path)])

    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "model.onnx").exists()
