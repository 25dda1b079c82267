"""The published config schema stays in step with the loader, and the samples' configs fit it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest

from dlopt.gate.config import config_json_schema, load_gate_config

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
