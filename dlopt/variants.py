"""Make a gate variant from its recipe: the glue between a config's `[[variants]]` table and
the optimize steps (quantize, prune, build). Each step validates its own options."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.errors import ConfigError

if TYPE_CHECKING:
    from dlopt.gate_config import GateConfig, VariantConfig


def check_recipe(variant: VariantConfig) -> None:
    """Validate a recipe's keys and values before any work starts; raises ConfigError."""
    options_class = _options_class(variant.kind)
    _options(options_class, variant)


def make_variant(variant: VariantConfig, reference: Path, config: GateConfig, folder: Path) -> Path:
    """Run the recipe on the FP32 reference (or the model source, for pruning); return the
    artifact path. Raises DloptError when the step fails."""
    raise ConfigError(f"variant {variant.name!r}: {variant.kind} recipes are not wired yet")


def _options_class(kind: str) -> Any:
    raise ConfigError(f"{kind} recipes are not available in this build of dlopt")


def _options(options_class: Any, variant: VariantConfig) -> Any:
    try:
        return options_class(**variant.recipe)
    except TypeError as error:
        raise ConfigError(
            f"variant {variant.name!r}: {variant.kind} recipe has an unknown key ({error})",
        ) from error
