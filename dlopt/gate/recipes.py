"""Make a gate variant from its recipe: the glue between a config's `[[variants]]` table and
the optimize steps (quantize, prune, build). Each step validates its own options; this module
only maps recipe keys onto them and resolves data paths against the config's folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.errors import ConfigError, DloptError

if TYPE_CHECKING:
    from dlopt.gate.config import GateConfig, VariantConfig


def check_recipe(variant: VariantConfig, config: GateConfig) -> None:
    """Validate a recipe's keys and values before any work starts; raises ConfigError."""
    _options(variant, config)


def config_inputs(config: GateConfig) -> list[str]:
    """Every file the gate reads: the config, the model and its weights, the data, and the
    data of each recipe (resolved as the recipe resolves them)."""
    base = config.path.resolve().parent
    inputs = [str(config.path), config.model.source, config.model.weights]
    inputs += [config.data.evaluation, config.data.calibration]
    for variant in config.variants:
        recipe = dict(variant.recipe)
        finetune = recipe.get("finetune")
        if isinstance(finetune, Mapping):
            recipe.update({"finetune": finetune.get("data"), "evaluate": finetune.get("evaluate")})
        for key in ("calibration", "evaluation", "finetune", "evaluate"):
            if isinstance(recipe.get(key), str):
                inputs.append(_resolve(recipe[key], base))
    return [text for text in inputs if text]


def make_variant(variant: VariantConfig, reference: Path, config: GateConfig, folder: Path) -> Path:
    """Run the recipe (on the FP32 reference ONNX, or on the model source for pruning) and
    return the artifact it made. Raises DloptError when the step fails."""
    options = _options(variant, config)
    if variant.kind == "prune":
        from dlopt.optimize.prune import prune_model

        weights = Path(config.model.weights) if config.model.weights else None
        result = prune_model(
            config.model.source,
            folder,
            config.model.inputs,
            weights,
            options,
            allow_pickle=config.model.trust_pickle,
        )
        return next(a.path for a in result.artifacts if a.format == "onnx")
    if variant.kind == "quantize":
        from dlopt.optimize.quantize import quantize_model

        return quantize_model(str(reference), folder, options).path
    if variant.kind == "build":
        from dataclasses import replace

        from dlopt.optimize.build import build_engine

        if options.precision == "int8" and options.calibration is None:
            options = replace(options, calibration=config.data.calibration)
        return build_engine(str(reference), folder, options).path
    raise ConfigError(f"variant {variant.name!r}: {variant.kind} recipes are not available yet")


def _options(variant: VariantConfig, config: GateConfig) -> Any:
    """The step's options object for a recipe; a bad key or value is a ConfigError.

    [data] gives the defaults a recipe does not set: the calibration data and its
    `calibration_limit`, the evaluation data a quantize recipe's accuracy budget is measured on
    (quantize's default budget unless `max_drift` is set; `max_drift = ["none"]` opts out), and
    the `task` of a prune recipe's fine-tuning."""
    base = config.path.resolve().parent
    if variant.kind == "prune":
        from dlopt.optimize.prune import PruneOptions

        fields = _prune_fields(variant.recipe, base, config.model.source)
        if fields.get("finetune") and config.data.task in ("classification", "regression"):
            fields.setdefault("task", config.data.task)
        return _build(PruneOptions, variant, fields)
    if variant.kind == "quantize":
        from dlopt.optimize.quantize import QuantizeOptions

        fields = dict(variant.recipe)
        fields.setdefault("calibration_size", config.data.calibration_limit)
        calibration = fields.get("calibration") or config.data.calibration
        if calibration and fields.get("mode", "auto") in ("static", "auto"):
            fields["calibration"] = _data(str(calibration), base, config.model.source)
        evaluation = fields.get("evaluation") or config.data.evaluation
        if evaluation:
            fields["evaluation"] = _data(str(evaluation), base, config.model.source)
        for key in ("exclude", "max_drift"):
            if isinstance(fields.get(key), list):
                fields[key] = tuple(fields[key])
        return _build(QuantizeOptions, variant, fields)
    if variant.kind == "build":
        from dlopt.optimize.build import BuildOptions

        fields = dict(variant.recipe)
        fields.setdefault("calibration_size", config.data.calibration_limit)
        if fields.get("calibration"):
            fields["calibration"] = _data(str(fields["calibration"]), base, config.model.source)
        if isinstance(fields.get("shapes"), list):
            fields["shapes"] = tuple(fields["shapes"])
        return _build(BuildOptions, variant, fields)
    raise ConfigError(
        f"variant {variant.name!r}: {variant.kind} recipes are not available yet",
        "use a quantize, prune or build recipe",
    )


def _prune_fields(recipe: Mapping[str, Any], base: Path, model_source: str) -> dict[str, Any]:
    """`finetune = {data = "...", epochs = 2, lr = 1e-3}` -> PruneOptions' flat fields."""
    fields = dict(recipe)
    finetune = fields.pop("finetune", None)
    if isinstance(finetune, Mapping):
        finetune = dict(finetune)
        data = finetune.pop("data", None)
        fields["finetune"] = _data(data, base, model_source) if data else None
        for key in ("epochs", "lr", "batch_size", "task", "evaluate"):
            if key in finetune:
                value = finetune.pop(key)
                fields[key] = _data(value, base, model_source) if key == "evaluate" else value
        if finetune:
            raise ConfigError(
                f"prune.finetune has unknown key {next(iter(finetune))!r}",
                "allowed: data, epochs, lr, batch_size, task, evaluate",
            )
    elif finetune is not None:
        fields["finetune"] = _data(str(finetune), base, model_source)
    if "ignore" in fields and isinstance(fields["ignore"], list):
        fields["ignore"] = tuple(fields["ignore"])
    return fields


def _data(reference: str, base: Path, model_source: str) -> str | None:
    from dlopt.gate.config import data_reference

    return data_reference(reference, base, model_source)


def _resolve(reference: str, base: Path) -> str:
    from dlopt.gate.config import resolve_reference

    return resolve_reference(reference, base)


def _build(options_class: Any, variant: VariantConfig, fields: Mapping[str, Any]) -> Any:
    for item in dataclasses.fields(options_class):
        value = fields.get(item.name)
        if str(item.type).startswith("int") and isinstance(value, float):
            raise ConfigError(
                f"variant {variant.name!r}: {variant.kind}.{item.name} = {value!r} is not an "
                "integer",
                "write a whole number without a decimal point",
            )
    try:
        return options_class(**fields)
    except TypeError as error:
        allowed = ", ".join(sorted(options_class.__dataclass_fields__))
        raise ConfigError(
            f"variant {variant.name!r}: {variant.kind} recipe has a bad key or value ({error})",
            f"allowed keys: {allowed}",
        ) from error
    except ConfigError:
        raise
    except DloptError as error:
        raise ConfigError(f"variant {variant.name!r}: {error.one_line()}") from error
