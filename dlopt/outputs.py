"""Stable names for model outputs, whatever structure the model returns.

- a tensor                         -> `output`
- a tuple or list                  -> `output_0`, `output_1`, ...
- a dict or a Hugging Face-style `ModelOutput`
                                   -> its keys, in order (None values are left out)
- nested containers                -> names joined with `.` (e.g. `hidden_states.0`)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dlopt.errors import ExportError


def flatten_outputs(outputs: Any) -> list[tuple[str, Any]]:
    """(name, tensor) pairs for a model's outputs, in a stable order."""
    if _is_tensor(outputs):
        return [("output", outputs)]
    if isinstance(outputs, (tuple, list)) and not _is_model_output(outputs):
        return _flatten_items((f"output_{i}", item) for i, item in enumerate(outputs))
    return _flatten(outputs, prefix="")


def _flatten(value: Any, prefix: str) -> list[tuple[str, Any]]:
    if _is_tensor(value):
        return [(prefix or "output", value)]
    if isinstance(value, Mapping) or _is_model_output(value):
        items = value.items() if isinstance(value, Mapping) else _model_output_items(value)
        return _flatten_items(
            (f"{prefix}.{key}" if prefix else str(key), item)
            for key, item in items
            if item is not None
        )
    if isinstance(value, (tuple, list)):
        return _flatten_items(
            (f"{prefix}.{i}" if prefix else f"output_{i}", item) for i, item in enumerate(value)
        )
    raise ExportError(
        f"model output {prefix or 'output'} is a {type(value).__name__}, not a tensor",
        "return tensors, or tuples, lists or dicts of tensors",
    )


def _flatten_items(items: Any) -> list[tuple[str, Any]]:
    flat: list[tuple[str, Any]] = []
    for name, item in items:
        flat.extend(_flatten(item, name))
    return flat


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _is_model_output(value: Any) -> bool:
    # Hugging Face's ModelOutput is an OrderedDict subclass with `to_tuple`; we avoid importing
    # transformers just to recognise it.
    return hasattr(value, "to_tuple") and hasattr(value, "keys")


def _model_output_items(value: Any) -> list[tuple[str, Any]]:
    return [(key, value[key]) for key in value.keys()]  # noqa: SIM118 - ModelOutput API
