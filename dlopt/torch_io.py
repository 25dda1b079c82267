"""Calling a torch model with named inputs, and giving its outputs stable flat names.

Exporters and TorchScript want positional tensor inputs and a flat tuple of outputs; users'
models take keyword or positional inputs and return tensors, tuples, dicts or ModelOutputs.
`FlatIOModule` bridges the two so that every exported artifact has the same input and output
names as the spec and `dlopt.outputs.flatten_outputs`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from dlopt.outputs import flatten_outputs
from dlopt.specs import TensorSpec


def accepts_keywords(module: torch.nn.Module, names: Sequence[str]) -> bool:
    """True when every input name is a parameter of `module.forward` (so call by keyword)."""
    if isinstance(module, torch.fx.GraphModule):
        return False  # an ExportedProgram's module names its parameters but takes them in order
    try:
        parameters = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters.values()):
        return False
    return all(name in parameters for name in names)


class FlatIOModule(torch.nn.Module):
    """Wraps a model: positional inputs in spec order in, a flat tuple of tensors out."""

    def __init__(self, model: torch.nn.Module, input_names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = list(input_names)
        self.by_keyword = accepts_keywords(model, input_names)
        # Not .eval(): the model is already in eval mode, and an ExportedProgram's module
        # refuses train()/eval() calls.
        self.training = False

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.by_keyword:
            outputs = self.model(**dict(zip(self.input_names, inputs, strict=True)))
        else:
            outputs = self.model(*inputs)
        return tuple(tensor for _, tensor in flatten_outputs(outputs))


def to_tensors(
    feed: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]
) -> tuple[torch.Tensor, ...]:
    """The feed's arrays as torch tensors, in spec order."""
    return tuple(torch.from_numpy(np.ascontiguousarray(feed[spec.name])) for spec in specs)


@torch.inference_mode()
def run_torch(
    model: torch.nn.Module,
    feed: Mapping[str, np.ndarray],
    specs: Sequence[TensorSpec],
    names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Run a model on a feed; outputs by their stable names as numpy arrays.

    `names` renames the flat outputs (e.g. an exported TorchScript returns a plain tuple whose
    names live in its manifest).
    """
    inputs = to_tensors(feed, specs)
    if accepts_keywords(model, [spec.name for spec in specs]):
        outputs: Any = model(
            **{spec.name: tensor for spec, tensor in zip(specs, inputs, strict=True)}
        )
    else:
        outputs = model(*inputs)
    flat = flatten_outputs(outputs)
    if names is not None and len(names) == len(flat):
        flat = [(name, tensor) for name, (_, tensor) in zip(names, flat, strict=True)]
    return {name: tensor.detach().cpu().numpy() for name, tensor in flat}


def output_names(
    model: torch.nn.Module, feed: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]
) -> list[str]:
    """The stable output names of a model, found by running it once."""
    return list(run_torch(model, feed, specs))
