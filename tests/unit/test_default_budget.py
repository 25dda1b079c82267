"""Quantize is safe by default: the default drift budget, `--max-drift none`, which outputs
count as a classifier's (top-1 agreement) and drift measured on random inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlopt.data import Batch, open_data
from dlopt.errors import ConfigError
from dlopt.optimize.quantize import QuantizeOptions
from dlopt.optimize.quantize.budget import DEFAULT_BUDGETS, DriftBudget
from dlopt.optimize.quantize.evaluation import (
    EvaluationSet,
    evaluation_set,
    is_classifier,
    measure_drift,
)
from dlopt.specs import parse_input_specs


def test_without_max_drift_the_default_budget_applies_and_needs_no_eval() -> None:
    options = QuantizeOptions(mode="dynamic")

    assert options.budget_source == "default"
    assert options.budgets() == list(DEFAULT_BUDGETS)
    assert [str(budget) for budget in options.budgets()] == [
        "cosine >= 0.99",
        "top1_agreement >= 0.99 (classifier outputs)",
    ]


def test_max_drift_none_opts_out_and_stands_alone() -> None:
    assert QuantizeOptions(mode="dynamic", max_drift=("none",)).budgets() == []
    assert QuantizeOptions(mode="dynamic", max_drift=("none",)).budget_source == "none"
    with pytest.raises(ConfigError, match="--max-drift none turns every budget off, but 2"):
        QuantizeOptions(mode="dynamic", max_drift=("none", "cosine=0.9"), evaluation="x.npz")


def test_given_budgets_replace_the_default_one() -> None:
    options = QuantizeOptions(mode="dynamic", max_drift=("cosine=0.9",), evaluation="x.npz")

    assert options.budget_source == "given"
    assert options.budgets() == [DriftBudget("cosine", 0.9)]


def test_torch_target_keeps_a_budget_too() -> None:
    options = QuantizeOptions(mode="dynamic", target="torch")

    assert options.budgets() == list(DEFAULT_BUDGETS)


def test_a_classifier_only_bound_holds_where_it_was_not_measured() -> None:
    default_top1 = DEFAULT_BUDGETS[1]
    asked_top1 = DriftBudget("top1_agreement", 0.99)

    assert default_top1.holds({"cosine": 0.999})
    assert not default_top1.holds({"top1_agreement": 0.95})
    assert not asked_top1.holds({"cosine": 0.999})


SCORES = np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "labels", "expected"),
    [
        ("output", None, False),  # [N, C] floats alone: an embedding as much as scores
        ("output", np.arange(6) % 10, True),  # class ids below C
        ("output", np.arange(6) + 20, False),  # ids beyond C: not these classes
        ("output", np.linspace(0, 1, 6), False),  # regression targets
        ("logits", None, True),
        ("sentence_embedding", None, False),
    ],
)
def test_classifier_outputs_are_told_from_embeddings(
    name: str, labels: np.ndarray | None, expected: bool
) -> None:
    assert is_classifier(SCORES, name, labels) is expected


class Batches(list):  # type: ignore[type-arg]
    """In-memory data: a list of batches with a description, re-iterable like a DataSource."""

    description = "test data"


def _evaluation(
    reference: np.ndarray, name: str, labels: np.ndarray | None = None
) -> EvaluationSet:
    feed = {"x": np.zeros((len(reference), 2), np.float32)}
    return evaluation_set(Batches([Batch(feed, labels)]), lambda feed: [reference], [name])


def test_drift_of_an_embedding_has_no_top1_agreement_unless_asked() -> None:
    embeddings = np.random.default_rng(1).standard_normal((8, 32)).astype(np.float32)
    evaluation = _evaluation(embeddings, "output")

    def shifted(feed: object) -> list[np.ndarray]:
        return [embeddings[:, ::-1].copy()]  # an arg-max that moves, a cosine that drops

    measured = measure_drift(shifted, evaluation, DEFAULT_BUDGETS)
    asked = measure_drift(shifted, evaluation, [DriftBudget("top1_agreement", 0.99)])

    assert "top1_agreement" not in measured and measured["cosine"] < 0.99
    assert "top1_agreement" in asked


def test_drift_of_a_labelled_classifier_has_top1_agreement_and_accuracy() -> None:
    labels = SCORES.argmax(1)
    measured = measure_drift(lambda feed: [SCORES], _evaluation(SCORES, "output", labels))

    assert measured["top1_agreement"] == 1.0 and measured["accuracy_drop"] == 0.0


@pytest.mark.parametrize(("source", "random"), [(None, True), ("synthetic", True), ("npz", False)])
def test_evaluation_sets_say_when_their_inputs_are_random(
    tmp_path: Path, source: str | None, random: bool
) -> None:
    specs = parse_input_specs(["x:batch=4x3"])
    if source == "npz":
        source = str(tmp_path / "data.npz")
        np.savez(source, x=np.ones((8, 3), np.float32))

    evaluation = evaluation_set(open_data(source, specs, 4, 8), lambda feed: [feed["x"]])

    assert evaluation.random_inputs is random
