"""The three pruning methods, applied in place to a copy of the user's model.

Structured pruning goes through torch-pruning's `BasePruner`; unstructured and 2:4 pruning go
through `torch.nn.utils.prune` masks, which fine-tuning keeps (pruned weights stay zero) and
`make_permanent` folds into the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from dlopt.errors import PruneError, first_line
from dlopt.optimize.prune.attention import find_hf_attention, layer_at_failure, update_hf_attention
from dlopt.optimize.prune.finetune import call_model
from dlopt.optimize.prune.stats import PRUNABLE_TYPES, supports_two_four, two_four_mask
from dlopt.outputs import flatten_outputs

if TYPE_CHECKING:
    from dlopt.optimize.prune.options import PruneOptions

_HOOKED_TYPES: tuple[type[nn.Module], ...] = (*PRUNABLE_TYPES, nn.Embedding)
Example = tuple[torch.Tensor, ...] | dict[str, torch.Tensor]
STRUCTURED_HINT = (
    "exclude the layers it trips on with --ignore NAME (e.g. attention projections whose "
    "sizes the model's code hard-codes), or use --method unstructured"
)


def run(module: nn.Module, example: Example) -> Any:
    if isinstance(example, dict):
        return call_model(module, example)
    return module(*example)


def output_layers(module: nn.Module, example: Example) -> list[str]:
    """Names of the layers whose outputs reach a model output with no other layer between.

    Found by walking the autograd graph back from each output until it meets the output of a
    convolution, linear layer or embedding (recorded by forward hooks).
    """
    owners: dict[Any, str] = {}

    def record(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.grad_fn is not None:
                owners[output.grad_fn] = name

        return hook

    handles = [
        layer.register_forward_hook(record(name))
        for name, layer in module.named_modules()
        if isinstance(layer, _HOOKED_TYPES)
    ]
    try:
        with torch.enable_grad():
            outputs = run(module, example)
    finally:
        for handle in handles:
            handle.remove()
    found: list[str] = []
    stack = [t.grad_fn for _, t in flatten_outputs(outputs) if t.grad_fn is not None]
    seen: set[Any] = set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node in owners:
            if owners[node] not in found:
                found.append(owners[node])
            continue
        stack.extend(next_node for next_node, _ in node.next_functions)
    return sorted(found)


def apply_method(
    module: nn.Module,
    example: Example,
    options: PruneOptions,
    protected: Sequence[str],
    taylor_backward: Callable[[nn.Module], None] | None = None,
) -> list[str]:
    """Prune `module` in place as the options say; returns the layers skipped (2:4 only)."""
    if options.method == "structured":
        _structured(module, example, options, protected, taylor_backward)
        return []
    targets = _targets(module, protected)
    if not targets:
        raise PruneError(
            "no layer left to prune: every convolution and linear layer is ignored or kept",
            "ignore fewer layers, or pass --prune-output-layers",
        )
    if options.method == "unstructured":
        torch_prune.global_unstructured(
            [(layer, "weight") for _, layer in targets],
            pruning_method=torch_prune.L1Unstructured,
            amount=options.effective_amount,
        )
        return []
    skipped = []
    for name, layer in targets:
        weight = cast(torch.Tensor, layer.weight)
        if supports_two_four(weight):
            torch_prune.custom_from_mask(layer, "weight", two_four_mask(weight))
        else:
            skipped.append(name)
    if len(skipped) == len(targets):
        raise PruneError(
            "no layer has input channels in multiples of 4, so none can be 2:4 sparse",
            "use --method unstructured or structured",
        )
    return skipped


def make_permanent(module: nn.Module) -> None:
    """Fold torch.nn.utils.prune masks into the weights and drop the re-parametrization."""
    for layer in module.modules():
        if torch_prune.is_pruned(layer) and hasattr(layer, "weight_orig"):
            torch_prune.remove(layer, "weight")


def check_outputs(original: nn.Module, pruned: nn.Module, example: Example, source: str) -> None:
    """The pruned model must run and give outputs of the original's names and shapes."""
    with torch.inference_mode():
        expected = {name: tuple(t.shape) for name, t in flatten_outputs(run(original, example))}
        try:
            outputs = flatten_outputs(run(pruned, example))
        except Exception as error:
            raise PruneError(
                f"the pruned {source} no longer runs ({first_line(error)}): the code assumes "
                "layer sizes that pruning changed",
                STRUCTURED_HINT,
            ) from error
    got = {name: tuple(t.shape) for name, t in outputs}
    if got != expected:
        raise PruneError(
            f"pruning changed the outputs of {source}: {got} instead of {expected}",
            "keep the output layers (drop --prune-output-layers) or --ignore them",
        )


def _structured(
    module: nn.Module,
    example: Example,
    options: PruneOptions,
    protected: Sequence[str],
    taylor_backward: Callable[[nn.Module], None] | None,
) -> None:
    import torch_pruning as tp

    by_name = dict(module.named_modules())
    importance: Any
    if options.importance == "taylor":
        importance = tp.importance.TaylorImportance()
    else:
        importance = tp.importance.MagnitudeImportance(p=1 if options.importance == "l1" else 2)
    num_heads: dict[nn.Module, int] = {
        layer: layer.num_heads
        for layer in module.modules()
        if isinstance(layer, nn.MultiheadAttention)
    }
    hf_attention = find_hf_attention(module)
    for attention in hf_attention:
        num_heads.update({projection: attention.heads for projection in attention.projections})
    parameters_before = sum(p.numel() for p in module.parameters())
    try:
        pruner = tp.pruner.BasePruner(
            module,
            example,
            importance=importance,
            pruning_ratio=options.effective_amount,
            ignored_layers=[by_name[name] for name in protected],
            round_to=options.round_to,
            num_heads=num_heads,
            # Whole heads go (torch-pruning's head pruning): each head keeps its size, so the
            # attention code that reshapes to (..., heads, head_size) still fits.
            prune_num_heads=bool(hf_attention),
            prune_head_dims=not hf_attention,
            head_pruning_ratio=options.effective_amount if hf_attention else 0.0,
            forward_fn=run,
        )
        if taylor_backward is not None:
            taylor_backward(module)
        pruner.step()
    except PruneError:
        raise
    except Exception as error:
        layer = layer_at_failure(error, module)
        if layer is None:
            raise PruneError(
                f"torch-pruning's dependency graph cannot prune this model: {first_line(error)}",
                STRUCTURED_HINT,
            ) from error
        block = layer.rsplit(".", 2)[0] if layer.count(".") >= 2 else layer
        raise PruneError(
            f"torch-pruning cannot follow the reshape or concatenation after layer {layer} "
            f"({first_line(error)}): a view that regroups channels there, such as a channel "
            "shuffle, is outside what its dependency graph models",
            f"torch-pruning traces every layer (its ignored layers too), so --ignore {block} "
            "does not help here: use --method unstructured (or 2:4) for this model",
        ) from error
    finally:
        module.zero_grad(set_to_none=True)
    if hf_attention:
        update_hf_attention(hf_attention)
    if sum(p.numel() for p in module.parameters()) == parameters_before:
        raise PruneError(
            f"structured pruning at {options.effective_amount:g} removed nothing: every channel "
            "group is ignored, kept or too small to cut",
            "ignore fewer layers, raise --amount or lower --round-to",
        )


def _targets(module: nn.Module, protected: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """Prunable layers outside the protected ones (a protected name covers its submodules)."""
    return [
        (name, layer)
        for name, layer in module.named_modules()
        if isinstance(layer, PRUNABLE_TYPES)
        and not any(name == p or name.startswith(p + ".") for p in protected)
    ]
