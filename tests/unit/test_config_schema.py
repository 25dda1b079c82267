"""The published config schema stays in step with the loader, and the samples' configs fit it."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import jsonschema
import pytest

from dlopt.gate.config import load_gate_config
from dlopt.gate.schema import config_json_schema
from dlopt.optimize.build.options import BuildOptions
from dlopt.optimize.prune.options import PruneOptions
from dlopt.optimize.quantize.options import QuantizeOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CONFIGS = sorted((ROOT / "models").glob("*/dlopt.toml"))


def test_published_schema_is_the_generated_one() -> None:
    published = json.loads((ROOT / "docs" / "dlopt-config.schema.json").read_text())

    assert published == config_json_schema(), "regenerate: dlopt gate --print-schema"


@pytest.mark.parametrize("path", SAMPLE_CONFIGS, ids=lambda p: p.parent.name)
def test_sample_configs_validate_against_the_schema_and_load(path: Path) -> None:
    raw = tomllib.loads(path.read_text())

    jsonschema.validate(raw, config_json_schema())
    config = load_gate_config(path)
    assert Path(config.model.source.rsplit(":", 1)[0]).is_file()


def test_schema_rejects_an_unknown_threshold() -> None:
    raw = {"model": {"source": "m.py:f"}, "gate": {"cosine_minimum": 0.9}}

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, config_json_schema())


@pytest.mark.parametrize(
    ("kind", "options_class"),
    [("quantize", QuantizeOptions), ("prune", PruneOptions), ("build", BuildOptions)],
)
def test_recipe_tables_list_every_option_of_their_step(kind: str, options_class: type) -> None:
    variant = config_json_schema()["properties"]["variants"]["items"]
    recipe = variant["properties"][kind]

    assert set(recipe["properties"]) == {f.name for f in dataclasses.fields(options_class)}
    for name, allowed in options_class.CHOICES.items():  # type: ignore[attr-defined]
        assert recipe["properties"][name] == {"enum": list(allowed)}


@pytest.mark.parametrize(
    "recipe",
    [
        {"mode": "static", "calibraton": "data.py:calibration"},  # a typo'd key
        {"mode": "int4"},  # not a mode
        {"mode": "static", "calibration_size": "many"},  # not an integer
    ],
)
def test_schema_rejects_a_bad_quantize_recipe(recipe: dict[str, object]) -> None:
    raw = {"model": {"source": "m.py:f"}, "variants": [{"name": "q", "quantize": recipe}]}

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, config_json_schema())


def test_schema_accepts_the_prune_finetune_table() -> None:
    finetune = {"data": "data.py:train", "epochs": 2, "lr": 0.001}
    raw = {
        "model": {"source": "m.py:f"},
        "variants": [{"name": "p", "prune": {"amount": 0.5, "finetune": finetune}}],
    }
    prune = config_json_schema()["properties"]["variants"]["items"]["properties"]["prune"]

    jsonschema.validate(raw, config_json_schema())  # raises when the table does not fit
    table = prune["properties"]["finetune"]["anyOf"][1]  # a data source string, or this
    assert set(finetune) <= set(table["properties"])
    with pytest.raises(jsonschema.ValidationError):  # and a typo'd key in it does not fit
        jsonschema.validate(
            {**raw, "variants": [{"name": "p", "prune": {"finetune": {"epoch": 2}}}]},
            config_json_schema(),
        )
