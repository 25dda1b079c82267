"""A short, seeded fine-tuning loop that recovers the accuracy pruning lost, and the metric it
is judged by.

The loss follows the task: cross-entropy on the first output (or `logits`) for classification
(integer labels), mean squared error for regression (float labels). The optimizer is Adam at a
fixed learning rate; batches come in the data source's order, which is fixed, so a run is
reproducible for a given seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from dlopt.data import Batch, DataSource
from dlopt.errors import DataError
from dlopt.outputs import flatten_outputs
from dlopt.specs import TensorSpec
from dlopt.torch_io import accepts_keywords

# Callback per training step: epoch (from 1), step within the run (from 1), total steps, loss.
StepCallback = Callable[[int, int, int, float], None]


@dataclass
class Metric:
    """A task metric on a data source: accuracy (classification) or MAE (regression)."""

    name: str
    value: float
    samples: int


@dataclass
class FinetuneReport:
    """What the fine-tuning loop did."""

    task: str
    epochs: int
    lr: float
    seed: int
    batch_size: int
    steps: int
    samples_per_epoch: int
    epoch_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def resolve_task(task: str, labels: np.ndarray) -> str:
    """`auto` -> classification for integer labels, regression for float ones."""
    if task != "auto":
        return task
    return "classification" if np.issubdtype(labels.dtype, np.integer) else "regression"


def first_labels(data: DataSource) -> np.ndarray:
    """The labels of the first batch; raises DataError when the data has none."""
    for batch in data:
        return _labels(batch, data)
    raise DataError(f"data source {data.description} yielded no samples")  # pragma: no cover


def evaluate(module: nn.Module, data: DataSource, specs: Sequence[TensorSpec], task: str) -> Metric:
    """Accuracy (classification) or mean absolute error (regression) of `module` on `data`."""
    was_training = module.training
    module.eval()
    correct, absolute_error, samples = 0, 0.0, 0
    with torch.inference_mode():
        for batch in data:
            labels = torch.from_numpy(np.ascontiguousarray(_labels(batch, data)))
            output = primary_output(call_model(module, _tensors(batch, specs)))
            if task == "classification":
                correct += int((output.argmax(-1) == labels.reshape(-1)).sum())
            else:
                prediction = _as_label_shape(output, labels)
                absolute_error += float((prediction - labels.float()).abs().sum())
            samples += batch.size
    module.train(was_training)
    if task == "classification":
        return Metric("accuracy", correct / samples, samples)
    return Metric("mae", absolute_error / samples, samples)


def finetune(
    module: nn.Module,
    data: DataSource,
    specs: Sequence[TensorSpec],
    task: str,
    epochs: int,
    lr: float,
    seed: int,
    on_step: StepCallback | None = None,
) -> FinetuneReport:
    """Train `module` in place for `epochs` passes over `data` with Adam; returns the report.

    Parameters that torch.nn.utils.prune re-parametrized (`weight_orig` with a mask) train
    through the mask, so pruned weights stay zero.
    """
    torch.manual_seed(seed)
    steps_per_epoch = sum(1 for _ in data)
    samples_per_epoch = data.count_samples()
    total_steps = steps_per_epoch * epochs
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=lr)
    report = FinetuneReport(task, epochs, lr, seed, data.batch_size, total_steps, samples_per_epoch)
    started = time.perf_counter()
    module.train()
    step = 0
    for epoch in range(1, epochs + 1):
        loss_sum, seen = 0.0, 0
        for batch in data:
            optimizer.zero_grad(set_to_none=True)
            loss = batch_loss(module, batch, data, specs, task)
            loss.backward()
            optimizer.step()
            step += 1
            loss_value = loss.item()
            loss_sum += loss_value * batch.size
            seen += batch.size
            if on_step is not None:
                on_step(epoch, step, total_steps, loss_value)
        report.epoch_losses.append(loss_sum / max(seen, 1))
    module.eval()
    report.seconds = time.perf_counter() - started
    return report


def batch_loss(
    module: nn.Module, batch: Batch, data: DataSource, specs: Sequence[TensorSpec], task: str
) -> torch.Tensor:
    """The task loss of one batch (with gradients)."""
    labels = torch.from_numpy(np.ascontiguousarray(_labels(batch, data)))
    output = primary_output(call_model(module, _tensors(batch, specs)))
    if task == "classification":
        return nn.functional.cross_entropy(output, labels.reshape(-1).long())
    return nn.functional.mse_loss(_as_label_shape(output, labels), labels.float())


def call_model(module: nn.Module, inputs: Mapping[str, torch.Tensor]) -> Any:
    """Call by keyword when forward() names the inputs, else positionally in spec order."""
    if accepts_keywords(module, list(inputs)):
        return module(**inputs)
    return module(*inputs.values())


def primary_output(outputs: Any) -> torch.Tensor:
    """The output a task metric is computed on: `logits` when there is one, else the first."""
    flat = flatten_outputs(outputs)
    for name, tensor in flat:
        if name == "logits":
            return tensor
    return flat[0][1]


def _tensors(batch: Batch, specs: Sequence[TensorSpec]) -> dict[str, torch.Tensor]:
    return {
        spec.name: torch.from_numpy(np.ascontiguousarray(batch.inputs[spec.name])) for spec in specs
    }


def _labels(batch: Batch, data: DataSource) -> np.ndarray:
    if batch.labels is None:
        raise DataError(
            f"data source {data.description} has no labels",
            "fine-tuning and accuracy need labelled data: add a `labels` array to each batch",
        )
    return batch.labels


def _as_label_shape(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if output.numel() != labels.numel():
        raise DataError(
            f"the model's output has shape {tuple(output.shape)} but the labels "
            f"{tuple(labels.shape)}: they cannot be compared as a regression",
            "pass --task classification if the labels are class indices",
        )
    return output.reshape(labels.shape).float()
