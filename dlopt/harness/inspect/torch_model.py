"""`dlopt inspect` for torch models: a `file.py:factory` (with --weights) or a TorchScript file.

MACs: torch-pruning's op counter (`count_ops_and_params`, forward hooks per module) for
`nn.Module`s; TorchScript modules refuse hooks, so for them torch's own
`torch.utils.flop_counter.FlopCounterMode` counts the aten ops the interpreter runs (FLOPs,
halved to MACs). The hook counter sees modules only: a matmul written as `a @ b` inside a
forward (attention scores) is not in a factory's count; the ONNX export's count has it.
"""

from __future__ import annotations

import contextlib
import io
import re
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlopt.errors import InputSpecError
from dlopt.harness.inspect.leaks import LeakCollector
from dlopt.harness.inspect.summary import ModelSummary, PrecisionMix, TensorInfo
from dlopt.specs import TensorSpec

PRECISION_OF = {
    "torch.float32": "fp32",
    "torch.float16": "fp16",
    "torch.bfloat16": "bf16",
    "torch.int8": "int8",
    "torch.qint8": "int8",
    "torch.quint8": "int8",
    "torch.float64": "fp64",
}
COMPUTE_MODULES = ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose2d", "Linear", "LSTM", "GRU")
_PRINTABLE = re.compile(rb"[\x20-\x7e]{6,}")


def inspect_torch(
    source: str,
    weights: Path | None,
    input_specs: Sequence[str],
    trust_pickle: bool,
    manifest_specs: Sequence[TensorSpec] = (),
) -> ModelSummary:
    """Summary of a torch model source; input specs from `input_specs`, else its manifest's,
    else the model file's. Raises SourceError, WeightsError, InputSpecError."""
    import torch

    from dlopt.artifacts import artifact_size_bytes
    from dlopt.sources import load_torch_model
    from dlopt.specs import parse_input_specs, random_feed
    from dlopt.torch_io import run_torch

    loaded = load_torch_model(source, weights, allow_pickle=trust_pickle)
    specs = (
        parse_input_specs(input_specs)
        if input_specs
        else list(manifest_specs) or list(loaded.default_inputs)
    )
    if not specs:
        raise InputSpecError(
            f"no input specs for {source}",
            "pass --input NAME:DIMS[:DTYPE], or define DLOPT_INPUTS in the model file",
        )
    module = loaded.module
    feed = random_feed(specs)
    try:
        outputs = run_torch(module, feed, specs)
    except Exception as error:
        raise InputSpecError(
            f"{source} fails on inputs {', '.join(map(str, specs))}: {type(error).__name__}",
            "check the names, shapes and dtypes given with --input",
        ) from error
    notes: list[str] = []
    # TorchScript refuses hooks and an ExportedProgram's module has no submodules to hook.
    scripted = isinstance(module, torch.jit.ScriptModule) or loaded.ref.kind == "exported_program"
    if scripted:
        macs, by_type = _macs_counted_by_torch(module, feed, specs)
    else:
        macs, by_type = _macs_hooks(module, feed, specs)
        notes.append(
            "MACs from torch-pruning's module hooks: matmuls written inline are not counted"
        )
    weights_by_precision, zeros = _weights(module)
    leaks = LeakCollector()
    path = loaded.ref.path
    if loaded.ref.kind == "torchscript" and path is not None:
        _scan_archive(path, leaks)
    size = artifact_size_bytes(path) if loaded.ref.kind != "factory" and path else None
    if weights is not None:
        size = weights.stat().st_size
    return ModelSummary(
        model=source,
        format=loaded.ref.kind,
        size_bytes=size or 0,
        inputs=[TensorInfo(s.name, [str(d) for d in s.dims], s.dtype) for s in specs],
        outputs=[
            TensorInfo(name, list(array.shape), str(array.dtype)) for name, array in outputs.items()
        ],
        parameters=sum(weights_by_precision.values()),
        macs=macs,
        macs_by_op_type=by_type,
        op_histogram=_histogram(module),
        precision=PrecisionMix(
            weights=weights_by_precision,
            compute_ops=_compute_precision(module),
        ),
        zero_weights=zeros,
        macs_at={spec.name: list(spec.example_shape) for spec in specs},
        producer=f"torch {torch.__version__}",
        leaks=leaks.results(),
        notes=notes,
    )


def _macs_hooks(module: Any, feed: Any, specs: Sequence[TensorSpec]) -> tuple[int, dict[str, int]]:
    import torch_pruning as tp

    from dlopt.torch_io import accepts_keywords, to_tensors

    tensors = to_tensors(feed, specs)
    example: Any = tensors
    if accepts_keywords(module, [spec.name for spec in specs]):
        example = {spec.name: tensor for spec, tensor in zip(specs, tensors, strict=True)}
    # The counter prints a warning about keyword inputs to stdout; stdout is the user's.
    with contextlib.redirect_stdout(io.StringIO()):
        total, _, per_layer, _ = tp.utils.count_ops_and_params(module, example, layer_wise=True)
    by_type: Counter[str] = Counter()
    for layer, count in per_layer.items():
        if count and not list(layer.children()):
            by_type[type(layer).__name__] += int(count)
    return int(total), dict(sorted(by_type.items()))


def _macs_counted_by_torch(
    module: Any, feed: Any, specs: Sequence[TensorSpec]
) -> tuple[int, dict[str, int]]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dlopt.torch_io import to_tensors

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        module(*to_tensors(feed, specs))
    flops = counter.get_flop_counts().get("Global", {})
    return counter.get_total_flops() // 2, {str(op): int(count) // 2 for op, count in flops.items()}


def _weights(module: Any) -> tuple[dict[str, int], int]:
    counts: Counter[str] = Counter()
    zeros = 0
    for tensor in module.parameters():  # not buffers (running statistics, counters)
        precision = PRECISION_OF.get(str(tensor.dtype))
        if precision is None:  # integer buffers: counters, indices
            continue
        counts[precision] += tensor.numel()
        zeros += int(tensor.numel() - int(tensor.count_nonzero()))
    return dict(counts), zeros


def _compute_precision(module: Any) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for layer in module.modules():
        kind = getattr(layer, "original_name", type(layer).__name__)
        if kind in COMPUTE_MODULES:
            weight = getattr(layer, "weight", None)
            dtype = str(weight.dtype) if weight is not None and hasattr(weight, "dtype") else ""
            counts[
                PRECISION_OF.get(dtype, "int8" if "quantized" in str(type(layer)) else "fp32")
            ] += 1
    return dict(counts)


def _histogram(module: Any) -> dict[str, int]:
    """aten ops of a TorchScript graph; leaf module types of an nn.Module."""
    graph = getattr(module, "inlined_graph", None)
    if graph is not None:
        kinds = Counter(node.kind() for node in graph.nodes() if node.kind().startswith("aten::"))
    else:
        kinds = Counter(
            type(layer).__name__ for layer in module.modules() if not list(layer.children())
        )
    return dict(kinds.most_common())


def _scan_archive(path: Path, leaks: LeakCollector) -> None:
    """TorchScript archives keep the source and, in `.debug_pkl`, the file names it came from."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not (name.endswith(".debug_pkl") or "/code/" in name):
                continue
            where = f"archive {name.split('/', 1)[-1].rsplit('/', 1)[0]}/*{Path(name).suffix}"
            for chunk in _PRINTABLE.findall(archive.read(name)):
                leaks.scan(where, chunk.decode("ascii"))
