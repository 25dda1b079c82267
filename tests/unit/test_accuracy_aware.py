"""Drift budgets, the float-group schedule and the per-channel sensitivity measure."""

from __future__ import annotations

import math

import pytest

from dlopt.errors import ConfigError
from dlopt.optimize.quantize.budget import float_groups, parse_budget


@pytest.mark.parametrize(
    ("text", "measured", "holds"),
    [
        ("cosine=0.99", {"cosine": 0.995}, True),
        ("cosine=0.99", {"cosine": 0.98}, False),
        ("accuracy_drop=0.01", {"accuracy_drop": 0.01}, True),
        ("accuracy_drop=0.01", {"accuracy_drop": 0.02}, False),
        ("sqnr_db=30", {"sqnr_db": math.inf}, True),
        ("cosine=0.99", {"cosine": math.nan}, False),
        ("cosine=0.99", {}, False),
    ],
)
def test_budgets_hold_on_the_right_side(text: str, measured: dict, holds: bool) -> None:
    assert parse_budget(text).holds(measured) is holds


@pytest.mark.parametrize(
    "text", ["cosine", "speed=2", "cosine=high", "cosine=1.5", "accuracy_drop=-0.1", "cosine=nan"]
)
def test_bad_budgets_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_budget(text)


def test_float_groups_grow_by_group_and_stop_at_the_cap() -> None:
    assert float_groups(["a", "b", "c", "d", "e"], 2, 4) == [["a", "b"], ["a", "b", "c", "d"]]
    assert float_groups(["a", "b", "c"], 1, 2) == [["a"], ["a", "b"]]
    assert float_groups(["a"], 1, 0) == []
