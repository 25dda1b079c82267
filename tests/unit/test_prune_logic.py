"""Pruning logic without exports: option validation, the 2:4 mask, counting, layer lookup."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from torch import nn

from dlopt.errors import PruneError
from dlopt.optimize.prune import PruneOptions, _resolve_ignored
from dlopt.optimize.prune.finetune import resolve_task
from dlopt.optimize.prune.methods import make_permanent, output_layers
from dlopt.optimize.prune.stats import (
    compressed_size_bytes,
    model_stats,
    supports_two_four,
    two_four_mask,
)
from tests.fixtures.prune_models import follows_two_four


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount": 0.0}, "amount 0.0 is outside (0, 1)"),
        ({"amount": 1.0}, "amount 1.0 is outside (0, 1)"),
        ({"amount": -0.2}, "amount -0.2 is outside (0, 1)"),
        ({"amount": 1.5}, "amount 1.5 is outside (0, 1)"),
        ({"method": "channels"}, "unknown method 'channels'"),
        ({"importance": "l3"}, "unknown importance 'l3'"),
        ({"task": "segmentation"}, "unknown task 'segmentation'"),
        ({"method": "2:4", "amount": 0.3}, "does not fit method 2:4"),
        ({"method": "unstructured", "importance": "taylor"}, "only with method structured"),
        ({"importance": "taylor"}, "needs gradients from labelled data"),
        ({"round_to": 0}, "round_to 0 must be an integer of at least 1"),
        ({"epochs": 0}, "epochs 0 must be an integer of at least 1"),
        ({"threads": 0}, "threads 0 must be an integer of at least 1"),
        ({"lr": 0.0}, "lr 0.0 must be a positive number"),
    ],
)
def test_invalid_options_raise_prune_error_naming_field_and_value(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(PruneError) as caught:
        PruneOptions(**fields)

    assert message in caught.value.one_line()
    assert caught.value.exit_code == 2


def test_amount_defaults_per_method_and_lists_become_tuples() -> None:
    assert PruneOptions().effective_amount == 0.3
    assert PruneOptions(method="2:4").effective_amount == 0.5
    assert PruneOptions(method="unstructured", amount=0.8).effective_amount == 0.8
    options = PruneOptions(ignore=["fc", "layer1"])  # type: ignore[arg-type]  # as from TOML
    assert options.ignore == ("fc", "layer1")


def test_gate_recipe_keys_build_options() -> None:
    options = PruneOptions(**{"method": "structured", "amount": 0.3})

    assert (options.method, options.effective_amount) == ("structured", 0.3)


def test_two_four_mask_keeps_the_two_largest_of_each_group_of_four() -> None:
    weight = torch.tensor([[0.1, -5.0, 3.0, 0.2, 1.0, 2.0, -3.0, 4.0]])

    mask = two_four_mask(weight)

    assert mask.tolist() == [[False, True, True, False, False, False, True, True]]


def test_two_four_mask_groups_conv_weights_along_input_channels() -> None:
    weight = torch.zeros(1, 4, 1, 2)
    weight[0, :, 0, 0] = torch.tensor([4.0, 3.0, 2.0, 1.0])  # kernel position 0
    weight[0, :, 0, 1] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # kernel position 1

    mask = two_four_mask(weight)

    assert mask[0, :, 0, 0].tolist() == [True, True, False, False]
    assert mask[0, :, 0, 1].tolist() == [False, False, True, True]


@settings(max_examples=40, deadline=None)
@given(
    out_channels=st.integers(1, 6),
    groups=st.integers(1, 4),
    kernel=st.sampled_from([(), (1, 1), (3, 3)]),
    seed=st.integers(0, 2**16),
)
def test_two_four_mask_always_gives_the_pattern_and_keeps_half(
    out_channels: int, groups: int, kernel: tuple[int, ...], seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(out_channels, 4 * groups, *kernel, generator=generator)

    masked = weight * two_four_mask(weight)

    assert follows_two_four(masked)
    assert not follows_two_four(weight)  # random normals are never zero
    assert int((masked != 0).sum()) == weight.numel() // 2


def test_two_four_refuses_channels_not_a_multiple_of_four() -> None:
    weight = torch.randn(8, 3, 3, 3)

    assert not supports_two_four(weight)
    with pytest.raises(ValueError, match="not a multiple of 4"):
        two_four_mask(weight)


def test_model_stats_counts_zeros_parameters_and_macs() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        model[0].weight[:2] = 0.0  # 8 of 32 weights
        model[2].weight[0, :4] = 0.0  # 4 of 16 weights

    stats = model_stats(model, (torch.randn(1, 4),))

    assert stats.parameters == 4 * 8 + 8 + 8 * 2 + 2
    # torch-pruning's counter adds one op per bias element and per ReLU element.
    assert stats.macs == (4 * 8 + 8) + 8 + (8 * 2 + 2)
    assert stats.prunable_weights == 48 and stats.zero_weights == 12
    assert stats.sparsity == pytest.approx(0.25)
    assert [layer.name for layer in stats.layers] == ["0", "2"]
    assert stats.layers[0].sparsity == pytest.approx(0.25)
    assert stats.size_bytes == stats.parameters * 4


def test_compressed_size_shrinks_with_zeros() -> None:
    dense = torch.randn(256, 256)
    sparse = dense * (torch.rand(256, 256) < 0.2)

    assert compressed_size_bytes([sparse]) < 0.5 * compressed_size_bytes([dense])


def test_output_layers_are_found_through_the_autograd_graph() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(4, 8)
            self.head = nn.Linear(8, 3)
            self.aux = nn.Linear(8, 1)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            hidden = torch.relu(self.body(x))
            return {"logits": self.head(hidden).softmax(-1), "score": self.aux(hidden) * 2}

    assert output_layers(TwoHeads(), (torch.randn(2, 4),)) == ["aux", "head"]


def test_ignore_accepts_names_and_globs_and_rejects_unknown_layers() -> None:
    model = nn.Sequential()
    model.add_module("encoder", nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))
    model.add_module("fc", nn.Linear(2, 2))

    assert _resolve_ignored(model, ["fc", "encoder.*"]) == ["fc", "encoder.0", "encoder.1"]
    with pytest.raises(PruneError, match="'fcc' names no layer") as caught:
        _resolve_ignored(model, ["fcc"])
    assert "did you mean fc?" in caught.value.one_line().lower()


def test_make_permanent_removes_masks_and_keeps_zeros() -> None:
    layer = nn.Linear(4, 4)
    torch.nn.utils.prune.l1_unstructured(layer, "weight", amount=0.5)

    make_permanent(layer)

    assert not hasattr(layer, "weight_orig") and "weight" in dict(layer.named_parameters())
    assert int((layer.weight == 0).sum()) == 8


@pytest.mark.parametrize(
    ("labels", "task", "expected"),
    [
        (np.array([0, 1]), "auto", "classification"),
        (np.array([0.5, 1.0], dtype=np.float32), "auto", "regression"),
        (np.array([0.5]), "classification", "classification"),
    ],
)
def test_task_follows_label_dtype_unless_forced(
    labels: np.ndarray, task: str, expected: str
) -> None:
    assert resolve_task(task, labels) == expected
