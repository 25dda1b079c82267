"""Stable output names for every structure a model may return."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from dlopt.errors import ExportError
from dlopt.outputs import flatten_outputs


class FakeModelOutput(OrderedDict):
    """Shaped like Hugging Face's ModelOutput: an OrderedDict with to_tuple()."""

    def to_tuple(self) -> tuple:
        return tuple(self.values())


def names(outputs: object) -> list[str]:
    return [name for name, _ in flatten_outputs(outputs)]


def test_names_for_each_structure() -> None:
    t = torch.zeros(1)

    assert names(t) == ["output"]
    assert names((t, t)) == ["output_0", "output_1"]
    assert names([t]) == ["output_0"]
    assert names({"logits": t, "extras": (t, {"a": t})}) == ["logits", "extras.0", "extras.1.a"]
    assert names(FakeModelOutput(logits=t, hidden_states=None, attentions=t)) == [
        "logits",
        "attentions",
    ]
    assert names((t, {"x": t})) == ["output_0", "output_1.x"]


def test_a_non_tensor_output_is_named_in_the_error() -> None:
    with pytest.raises(ExportError, match="model output extras is a str"):
        flatten_outputs({"logits": torch.zeros(1), "extras": "text"})
