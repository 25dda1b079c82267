"""What pruning changed: parameters, MACs, size, sparsity (whole model and per layer), and the
2:4 semi-structured mask.

MACs come from torch-pruning's op counter (`count_ops_and_params`) at the input specs' example
shapes. Sparsity counts exact zeros in the weights of the prunable layers (convolutions and
linear layers); the compressed size is zlib over the raw FP32 tensors, which is what an
unstructured-pruned model gains on disk or over the wire.
"""

from __future__ import annotations

import contextlib
import io
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
from torch import nn

# Layers whose weights pruning acts on (torch-pruning's root module types, minus LSTM).
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)
TWO_FOUR_GROUP = 4
TWO_FOUR_KEEP = 2


@dataclass
class LayerStats:
    """One prunable layer: its weight shape, parameter count, zeros and MACs."""

    name: str
    kind: str
    weight_shape: list[int]
    parameters: int
    zero_weights: int
    macs: int | None = None

    @property
    def weight_count(self) -> int:
        return _product(self.weight_shape)

    @property
    def sparsity(self) -> float:
        return self.zero_weights / self.weight_count if self.weight_count else 0.0


@dataclass
class ModelStats:
    """Whole-model figures, plus one row per prunable layer."""

    parameters: int
    macs: int
    size_bytes: int
    compressed_bytes: int
    prunable_weights: int
    zero_weights: int
    layers: list[LayerStats] = field(default_factory=list)

    @property
    def sparsity(self) -> float:
        """Fraction of the prunable layers' weights that are exactly zero."""
        return self.zero_weights / self.prunable_weights if self.prunable_weights else 0.0

    def to_dict(self, per_layer: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["sparsity"] = round(self.sparsity, 6)
        if per_layer:
            for row, layer in zip(data["layers"], self.layers, strict=True):
                row["sparsity"] = round(layer.sparsity, 6)
        else:
            del data["layers"]
        return data


def model_stats(
    module: nn.Module,
    example_inputs: tuple[torch.Tensor, ...] | dict[str, torch.Tensor],
) -> ModelStats:
    """Count parameters, MACs (torch-pruning's op counter), size and zeros of `module`.

    MACs are for one forward pass on `example_inputs`: give them a batch of one to get MACs
    per sample (keyword inputs make the counter count the whole pass).
    """
    import torch_pruning as tp

    # The counter prints a warning about keyword inputs to stdout; stdout is the user's.
    with contextlib.redirect_stdout(io.StringIO()):
        macs, parameters, layer_macs, _ = tp.utils.count_ops_and_params(
            module, example_inputs, layer_wise=True
        )
    layers: list[LayerStats] = []
    for name, layer in module.named_modules():
        if not isinstance(layer, PRUNABLE_TYPES):
            continue
        weight = cast(torch.Tensor, layer.weight).detach()
        layer_parameters = sum(p.numel() for p in layer.parameters(recurse=False))
        count = layer_macs.get(layer)
        layers.append(
            LayerStats(
                name=name,
                kind=type(layer).__name__,
                weight_shape=list(weight.shape),
                parameters=int(layer_parameters),
                zero_weights=int((weight == 0).sum()),
                macs=int(count) if count is not None else None,
            )
        )
    tensors = [t.detach() for t in module.state_dict().values() if isinstance(t, torch.Tensor)]
    return ModelStats(
        parameters=int(parameters),
        macs=int(macs),
        size_bytes=sum(t.numel() * t.element_size() for t in tensors),
        compressed_bytes=compressed_size_bytes(tensors),
        prunable_weights=sum(layer.weight_count for layer in layers),
        zero_weights=sum(layer.zero_weights for layer in layers),
        layers=layers,
    )


def compressed_size_bytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes of the tensors' raw data after zlib (level 6), tensor by tensor."""
    total = 0
    for tensor in tensors:
        data = tensor.contiguous().cpu().numpy().tobytes()
        total += len(zlib.compress(data, 6))
    return total


def supports_two_four(weight: torch.Tensor) -> bool:
    """True when the input-channel dimension (dim 1) splits into groups of four."""
    return weight.dim() >= 2 and weight.shape[1] % TWO_FOUR_GROUP == 0


def two_four_mask(weight: torch.Tensor) -> torch.Tensor:
    """Boolean mask keeping the 2 largest-magnitude weights in every 4 consecutive input channels.

    The groups run along the input-channel dimension (dim 1), the reduction dimension that
    NVIDIA's sparse tensor cores need to be 2:4 sparse; for convolutions that is taken at each
    kernel position. Raises ValueError when dim 1 is not a multiple of 4.
    """
    if not supports_two_four(weight):
        raise ValueError(
            f"weight of shape {tuple(weight.shape)}: dim 1 (input channels) is not a "
            f"multiple of {TWO_FOUR_GROUP}"
        )
    channels_last = weight.detach().movedim(1, -1)
    groups = channels_last.abs().reshape(-1, TWO_FOUR_GROUP)
    keep = groups.topk(TWO_FOUR_KEEP, dim=1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep, True)
    return mask.reshape(channels_last.shape).movedim(-1, 1)


def _product(shape: Sequence[int]) -> int:
    total = 1
    for size in shape:
        total *= int(size)
    return total
