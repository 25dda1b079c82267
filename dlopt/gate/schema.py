"""The JSON Schema of `dlopt.toml` (`dlopt gate --print-schema`, docs/dlopt-config.schema.json),
generated from the dataclasses that validate it: the config's tables and the optimize steps'
options for the recipe tables. A new field of an options class appears here, in validation and
in the published schema at once."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from dlopt.gate.config import (
    CONFIG_SCHEMA_VERSION,
    RECIPE_KINDS,
    TASKS,
    VARIANT_NAME,
    BenchConfig,
    DataConfig,
    ModelConfig,
    Thresholds,
    TrackingConfig,
)
from dlopt.harness.executors.targets import RESOURCE_NAME, TARGET_NAME

# Recipe keys that are not options fields: prune's `finetune` may be a table of its own.
FINETUNE_KEYS = ("data", "epochs", "lr", "batch_size", "task", "evaluate")


def config_json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the config."""
    from dlopt.optimize.build.options import BuildOptions
    from dlopt.optimize.prune.options import PruneOptions
    from dlopt.optimize.quantize.options import QuantizeOptions

    thresholds = table(Thresholds)
    gate = {
        **thresholds,
        "properties": {
            **thresholds["properties"],
            "variants": {"type": "object", "additionalProperties": thresholds},
        },
    }
    data = table(DataConfig)
    data["properties"]["task"] = {"enum": list(TASKS)}
    prune = table(PruneOptions)
    finetune = {key: prune["properties"].get(key, {"type": "string"}) for key in FINETUNE_KEYS}
    prune["properties"]["finetune"] = {
        "anyOf": [
            {"type": "string"},
            {"type": "object", "additionalProperties": False, "properties": finetune},
        ]
    }
    recipes = {
        "quantize": table(QuantizeOptions),
        "prune": prune,
        "build": table(BuildOptions, required=("backend",)),
    }
    variant = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": VARIANT_NAME.pattern},
            "backends": {"type": "array", "items": {"type": "string"}},
            **{kind: recipes[kind] for kind in RECIPE_KINDS},
        },
        "required": ["name"],
        "oneOf": [{"required": [kind]} for kind in RECIPE_KINDS],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "dlopt gate config (dlopt.toml)",
        "type": "object",
        "additionalProperties": False,
        "required": ["model"],
        "properties": {
            "schema_version": {"const": CONFIG_SCHEMA_VERSION},
            "model": table(ModelConfig, required=("source",)),
            "data": data,
            "variants": {"type": "array", "items": variant},
            "bench": table(BenchConfig),
            "gate": gate,
            "targets": {"type": "array", "items": _target()},
            "tracking": table(TrackingConfig),
        },
    }


def _target() -> dict[str, Any]:
    """[[targets]]: resources is a table of Ray resource names to positive amounts."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": TARGET_NAME.pattern},
            "resources": {
                "type": "object",
                "propertyNames": {"pattern": RESOURCE_NAME.pattern},
                "additionalProperties": {"type": "number", "exclusiveMinimum": 0},
            },
            "backends": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        },
        "required": ["name", "backends"],
    }


def table(cls: Any, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The schema of one TOML table from a dataclass: its fields, their types and choices."""
    choices: dict[str, tuple[str, ...]] = getattr(cls, "CHOICES", {})
    properties = {}
    for item in fields(cls):
        schema = json_type(str(item.type))
        if item.name in choices:
            schema = {"enum": list(choices[item.name])}
        properties[item.name] = schema
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": list(required),
    }


def json_type(annotation: str) -> dict[str, Any]:
    """A field's annotation (a string under `from __future__ import annotations`) as JSON."""
    nullable = "None" in annotation
    if annotation.startswith("tuple"):
        schema: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
    elif annotation.startswith(("str", "Path")):
        schema = {"type": "string"}
    elif annotation.startswith("bool"):
        schema = {"type": "boolean"}
    elif annotation.startswith("int"):
        schema = {"type": "integer"}
    else:
        schema = {"type": "number", "minimum": 0}
    if nullable:
        schema = {**schema, "type": [schema["type"], "null"]}
    return schema
