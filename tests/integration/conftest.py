"""Shared fixtures: the sample models exported once per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "models"


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
