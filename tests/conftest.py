"""Mark tests by folder: tests/integration -> integration, tests/gpu -> gpu."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# CI machines are shared: generation speed and per-example time say nothing about correctness.
settings.register_profile("dlopt", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("dlopt")

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = ROOT / "tests"
    for item in items:
        path = Path(str(item.fspath)).resolve()
        # The folder under tests/, not any folder of the checkout's path (/ci/gpu/...).
        parts = path.relative_to(tests).parts if path.is_relative_to(tests) else ()
        if parts[:1] == ("integration",):
            item.add_marker(pytest.mark.integration)
        if parts[:1] == ("gpu",):
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
