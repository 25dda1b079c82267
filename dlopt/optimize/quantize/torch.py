"""The torch target: dynamic INT8 (`torch.ao.quantization.quantize_dynamic` on Linear, LSTM and
GRU layers), saved as TorchScript for eager/TorchScript deployment.

torch.ao.quantization is deprecated in torch 2.13 and was the least accurate variant on a MiniLM
here (cosine 0.943); torchao is not a dlopt dependency. The path is kept for deployments that
must stay in torch, and the manifest and `--help` say it is deprecated.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlopt.artifacts import (
    Manifest,
    manifest_path,
    move_into_place,
    staging_dir,
    write_manifest,
)
from dlopt.optimize.quantize.evaluation import evaluation_set, measure_drift

if TYPE_CHECKING:
    from dlopt.optimize.quantize.options import QuantizeOptions, QuantizeResult

DEPRECATION = (
    "torch.ao.quantization is deprecated in torch 2.13; this artifact uses it because no "
    "maintained torch-native dynamic INT8 path is installed (prefer --target onnxruntime)"
)


def quantize_torch_dynamic(
    model: str,
    output_dir: Path,
    options: QuantizeOptions,
    say: Callable[[str], None],
    weights: Path | None,
    input_specs: Sequence[str],
) -> QuantizeResult:
    import torch

    from dlopt.optimize.model_input import parent_record, resolve_model_input
    from dlopt.optimize.quantize.check import drift_record, open_evaluation, require_budgets
    from dlopt.optimize.quantize.options import QuantizeError, QuantizeResult
    from dlopt.specs import random_feed
    from dlopt.torch_io import FlatIOModule, run_torch, to_tensors

    if options.exclude:
        from dlopt.errors import ConfigError

        raise ConfigError("--exclude is not available for --target torch", "drop --exclude")
    say(f"loading {model}")
    source = resolve_model_input(model, weights, input_specs)
    if source.kind != "torch":
        raise QuantizeError(
            f"{model} is an ONNX file; --target torch quantizes a torch model",
            "give the model as file.py:factory with --weights, or use --target onnxruntime",
        )
    specs, names = source.specs, source.output_names
    fp32 = source.loaded.module.eval()
    say("quantizing Linear/LSTM/GRU weights to INT8 (torch.ao, deprecated)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation is recorded in the manifest instead
        quantized = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(fp32), {torch.nn.Linear, torch.nn.LSTM, torch.nn.GRU}, torch.qint8
        )
    replaced = sum(1 for module in quantized.modules() if "quantized" in type(module).__module__)
    if replaced == 0:
        raise QuantizeError(
            f"{model} has no Linear, LSTM or GRU layer for dynamic INT8",
            "use --target onnxruntime --mode static for convolutional models",
        )
    final_path = output_dir / "model.ts"
    with staging_dir(output_dir) as staging:
        staged = staging / "model.ts"
        wrapper = FlatIOModule(quantized, [spec.name for spec in specs])
        example = to_tensors(random_feed(specs, seed=options.seed), specs)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.jit.save(torch.jit.trace(wrapper, example, check_trace=False), str(staged))
        except Exception as error:
            raise QuantizeError(
                f"TorchScript tracing of the quantized {model} failed: {type(error).__name__}",
                "use --target onnxruntime",
            ) from error
        reloaded = torch.jit.load(str(staged), map_location="cpu").eval()
        say("measuring drift against the FP32 model")

        def runner(module: Any) -> Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]:
            return lambda feed: list(run_torch(module, feed, specs).values())

        evaluation = evaluation_set(open_evaluation(specs, options), runner(fp32), names or ())
        budgets = options.budgets()
        measured = measure_drift(runner(reloaded), evaluation, budgets)
        # No fallback here (torch.ao has no per-layer choice in this path): a check only.
        require_budgets(
            budgets,
            measured,
            f"the dynamic INT8 TorchScript of {model}",
            "use --target onnxruntime --mode dynamic (per-channel INT8 weights)",
            options.budget_source,
            evaluation,
        )
        drift = drift_record(evaluation, measured, budgets, options.budget_source)
        drift["reference"] = "FP32 torch model (eager)"
        recipe = {
            "step": "quantize",
            "mode": "dynamic",
            "target": "torch",
            "tool": "torch.ao.quantization.quantize_dynamic",
            "deprecated": DEPRECATION,
            "quantized_layers": replaced,
            "torchscript_mode": "trace",
            "seed": options.seed,
        }
        manifest = Manifest(
            format="torchscript",
            file=staged.name,
            precision="int8",
            inputs=[spec.to_dict() for spec in specs],
            outputs=list(names or []),
            source={"ref": model, "weights": str(weights) if weights else None},
            parent=parent_record(source),
            recipe=recipe,
            checks={"drift": drift},
        )
        sidecar = write_manifest(staged, manifest)
        move_into_place([sidecar, staged], output_dir)
    return QuantizeResult(final_path, manifest_path(final_path), {**recipe, "drift": drift})
