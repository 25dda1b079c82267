"""Prune a torch model, optionally fine-tune it back, and save it whole as TorchScript and ONNX.

Public entry point: `prune_model`. Methods:
- `structured` (default): channel pruning on torch-pruning's dependency graph (`BasePruner`),
  which keeps residual additions, concatenations and attention heads consistent. The model
  really shrinks, so it is saved whole: its state_dict no longer fits the original factory.
- `unstructured`: global magnitude pruning with `torch.nn.utils.prune`, made permanent. The
  shapes stay; only the compressed size shrinks. Dense runtimes run it no faster.
- `2:4`: two of every four consecutive input-channel weights zeroed, the pattern NVIDIA's
  sparse tensor cores (Ampere and newer, TensorRT with sparse weights) run faster.

The layers that produce the model's outputs are kept unless asked otherwise. The input model
is never changed: pruning works on a copy.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.artifacts import (
    Manifest,
    move_staging_into_place,
    read_manifest,
    staging_dir,
    write_manifest,
)
from dlopt.data import DataSource
from dlopt.errors import PruneError
from dlopt.optimize.export import ExportOptions, ExportResult, export_loaded_model
from dlopt.optimize.prune.options import (
    TWO_FOUR_NOTE,
    UNSTRUCTURED_NOTE,
    AccuracyReport,
    Progress,
    PruneOptions,
    PruneResult,
)
from dlopt.sources import LoadedModel, load_torch_model, source_record
from dlopt.specs import TensorSpec

if TYPE_CHECKING:
    from dlopt.optimize.prune.finetune import FinetuneReport, StepCallback
    from dlopt.optimize.prune.stats import ModelStats

__all__ = ["PruneOptions", "PruneResult", "prune_model"]


def prune_model(
    source: str,
    output_dir: Path,
    input_specs: Sequence[str] = (),
    weights: Path | None = None,
    options: PruneOptions | None = None,
    allow_pickle: bool = False,
    progress: Progress | None = None,
    on_train_step: StepCallback | None = None,
) -> PruneResult:
    """Prune `source` and write `model.ts` and `model.onnx` (each with a manifest) to `output_dir`.

    Returns the before/after report. Raises PruneError for bad options, an unknown layer in
    `ignore` or a model the dependency graph cannot prune; SourceError, WeightsError,
    InputSpecError and DataError for bad inputs; ExportError when the pruned model does not
    export with parity.
    """
    _require_factory(source)
    import torch

    options = options or PruneOptions()
    threads = torch.get_num_threads()
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    try:
        return _prune(
            source, output_dir, input_specs, weights, options, allow_pickle, progress, on_train_step
        )
    finally:
        torch.set_num_threads(threads)


def _require_factory(source: str) -> None:
    """Prune needs the model's Python code: torch-pruning rewrites nn.Module layers, which a
    TorchScript, .pt2 or ONNX file no longer has."""
    from dlopt.sources import parse_source

    ref = parse_source(source)
    if ref.kind != "factory":
        raise PruneError(
            f"{source} is a {ref.kind.replace('_', ' ')} file; prune works on the model's "
            "Python code",
            "give the factory that builds it (file.py:factory or package.module:factory) with "
            "--weights; torch-pruning cannot change the layers of an exported model",
        )


def _prune(
    source: str,
    output_dir: Path,
    input_specs: Sequence[str],
    weights: Path | None,
    options: PruneOptions,
    allow_pickle: bool,
    progress: Progress | None,
    on_train_step: StepCallback | None,
) -> PruneResult:
    import dlopt.optimize.prune.methods as prune_methods
    from dlopt.optimize.export import resolve_input_specs
    from dlopt.optimize.prune.stats import model_stats

    say = progress or (lambda message: None)
    say(f"loading {source}")
    loaded = load_torch_model(source, weights, allow_pickle=allow_pickle)
    specs = resolve_input_specs(input_specs, loaded)
    original = loaded.module
    ignored = _resolve_ignored(original, options.ignore)
    example = _example(original, specs, options.seed)
    # MACs per sample: the op counter is given a batch of one.
    batch_axes = {spec.dims[0].axis: 1 for spec in specs if spec.dims and spec.dims[0].axis}
    count_example = _example(original, specs, options.seed, batch_axes)

    train_data, eval_data, task = _open_data(options, specs)
    say("counting parameters and MACs")
    before = model_stats(original, count_example)
    pruned = copy.deepcopy(original)
    for parameter in pruned.parameters():
        parameter.requires_grad_(True)
    kept = prune_methods.output_layers(pruned, example) if options.keep_output_layers else []
    protected = sorted(set(ignored) | set(kept))
    say(f"pruning ({options.method}, {options.effective_amount:g})")
    taylor_loss = None
    if options.importance == "taylor" and train_data is not None and task is not None:
        taylor_loss = _taylor_loss(train_data, specs, task, options.taylor_batches)
    skipped = prune_methods.apply_method(pruned, example, options, protected, taylor_loss)
    prune_methods.check_outputs(original, pruned, example, source)
    accuracy, finetune_report = None, None
    if eval_data is not None and task is not None:
        accuracy, finetune_report = _recover(
            original, pruned, train_data, eval_data, specs, task, options, on_train_step, say
        )
    prune_methods.make_permanent(pruned)
    for parameter in pruned.parameters():
        parameter.grad = None
    after = model_stats(pruned, count_example)
    result = PruneResult(options, output_dir, [], before, after, task, accuracy, finetune_report)
    result.kept_layers, result.skipped_layers = kept, skipped
    result.notes = {"unstructured": [UNSTRUCTURED_NOTE], "2:4": [TWO_FOUR_NOTE]}.get(
        options.method, []
    )
    result.pruned_layers_sparsity = _targeted_sparsity(after, [*protected, *skipped])
    say("exporting the pruned model")
    result.artifacts = _export(loaded, pruned, specs, output_dir, result, say)
    return result


def _open_data(
    options: PruneOptions, specs: Sequence[TensorSpec]
) -> tuple[DataSource | None, DataSource | None, str | None]:
    """The fine-tuning data, the evaluation data (default: the same) and the task."""
    from dlopt.data import open_data
    from dlopt.optimize.prune.finetune import first_labels, resolve_task

    train_data = eval_data = task = None
    if options.finetune is not None:
        train_data = open_data(options.finetune, specs, options.batch_size, seed=options.seed)
    eval_source = options.evaluate or options.finetune
    if eval_source is not None:
        eval_data = open_data(eval_source, specs, options.batch_size, seed=options.seed)
        task = resolve_task(options.task, first_labels(eval_data))
    return train_data, eval_data, task


def _recover(
    original: Any,
    pruned: Any,
    train_data: DataSource | None,
    eval_data: DataSource,
    specs: Sequence[TensorSpec],
    task: str,
    options: PruneOptions,
    on_train_step: StepCallback | None,
    say: Progress,
) -> tuple[AccuracyReport, FinetuneReport | None]:
    """Measure the metric before and after pruning; fine-tune (in place) and measure again."""
    from dlopt.optimize.prune.finetune import evaluate, finetune

    say("measuring accuracy before and after pruning")
    before = evaluate(original, eval_data, specs, task)
    accuracy = AccuracyReport(
        before.name,
        eval_data.description,
        before.samples,
        before.value,
        evaluate(pruned, eval_data, specs, task).value,
    )
    if train_data is None:
        return accuracy, None
    say(f"fine-tuning for {options.epochs} epochs")
    report = finetune(
        pruned, train_data, specs, task, options.epochs, options.lr, options.seed, on_train_step
    )
    accuracy.after_finetune = evaluate(pruned, eval_data, specs, task).value
    return accuracy, report


def _targeted_sparsity(after: ModelStats, excluded: Sequence[str]) -> float:
    """Sparsity over the layers pruning acted on: what --amount asked for."""
    targets = [
        layer
        for layer in after.layers
        if not any(layer.name == name or layer.name.startswith(name + ".") for name in excluded)
    ]
    weights = sum(layer.weight_count for layer in targets)
    return sum(layer.zero_weights for layer in targets) / weights if weights else 0.0


def _example(
    module: Any, specs: Sequence[TensorSpec], seed: int, axis_sizes: dict[str, int] | None = None
) -> Any:
    """Random example inputs: a dict when forward() takes the input names, else a tuple."""
    from dlopt.specs import random_feed
    from dlopt.torch_io import accepts_keywords, to_tensors

    tensors = to_tensors(random_feed(specs, axis_sizes, seed=seed), specs)
    if accepts_keywords(module, [spec.name for spec in specs]):
        return {spec.name: tensor for spec, tensor in zip(specs, tensors, strict=True)}
    return tensors


def _resolve_ignored(module: Any, patterns: Sequence[str]) -> list[str]:
    """Module names matched by the --ignore names or globs (`layers.*.attention`).

    Raises PruneError for a pattern that matches no module.
    """
    known = [name for name, _ in module.named_modules() if name]
    matched: list[str] = []
    for pattern in patterns:
        hits = [name for name in known if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            close = difflib.get_close_matches(pattern, known, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            top = sorted({name.split(".")[0] for name in known})[:12]
            raise PruneError(
                f"--ignore {pattern!r} names no layer of the model",
                f"{hint}layer names are module paths (globs allowed) under "
                f"{', '.join(top) or 'none'}",
            )
        matched.extend(name for name in hits if name not in matched)
    return matched


def _taylor_loss(train_data: Any, specs: Any, task: str, batches: int) -> Callable[[Any], Any]:
    """A function that backpropagates the task loss of the first batches (Taylor importance)."""
    from dlopt.optimize.prune.finetune import batch_loss

    def backward(module: Any) -> None:
        module.zero_grad(set_to_none=True)
        for index, batch in enumerate(train_data):
            if index >= batches:
                break
            batch_loss(module, batch, train_data, specs, task).backward()

    return backward


def _export(
    loaded: LoadedModel,
    pruned: Any,
    specs: Any,
    output_dir: Path,
    result: PruneResult,
    say: Progress,
) -> list[ExportResult]:
    """Export into a staging folder, record the recipe in the manifests, then move into place."""
    pruned_loaded = LoadedModel(pruned, loaded.ref, list(specs), loaded.weights_sha256)
    recipe = result.to_dict()
    parent = source_record(loaded)  # the source, not an artifact: pruning starts there
    with staging_dir(output_dir) as staging:
        exported = export_loaded_model(
            pruned_loaded, specs, staging, ExportOptions(seed=result.options.seed), say
        )
        for artifact in exported:
            data = read_manifest(artifact.path) or {}
            data["recipe"] = {**recipe, "export": data.get("recipe", {})}
            data["parent"] = parent
            write_manifest(artifact.path, Manifest(**data))
        move_staging_into_place(staging, output_dir)
    for artifact in exported:
        artifact.path = output_dir / artifact.path.name
        artifact.manifest_path = output_dir / artifact.manifest_path.name
    return exported
