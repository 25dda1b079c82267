"""Shared fixtures: the sample models exported once per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "models"


def cnn_config_head(evaluation_limit: int, calibration: bool = False) -> str:
    """The [model] and [data] tables of a gate config on the digits CNN sample."""
    cnn = SAMPLES / "digits_cnn"
    data = f'evaluation = "{cnn / "data.py"}:evaluation"\n'
    if calibration:
        data += f'calibration = "{cnn / "data.py"}:calibration"\n'
    return (
        f'[model]\nsource = "{cnn / "model.py"}:create_model"\nweights = "{cnn / "weights.pt"}"\n'
        f"\n[data]\n{data}evaluation_limit = {evaluation_limit}\n"
    )


def sample_source(name: str) -> str:
    return f"{SAMPLES / name / 'model.py'}:create_model"


def sample_weights(name: str) -> Path:
    return SAMPLES / name / "weights.pt"


@pytest.fixture(scope="session")
def exported_sample(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`exported_sample("digits_cnn")` -> folder with model.onnx and model.ts (made once)."""
    from dlopt.optimize.export import export_model

    made: dict[str, Path] = {}

    def export(name: str) -> Path:
        if name not in made:
            folder = tmp_path_factory.mktemp(f"{name}_fp32")
            export_model(sample_source(name), folder, weights=sample_weights(name))
            made[name] = folder
        return made[name]

    return export
