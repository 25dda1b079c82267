"""The `dlopt gate` config: a TOML file, validated into frozen dataclasses.

Every error names the key (`gate.cosine_min`), the bad value and what is allowed. Relative
paths are resolved against the config file's folder, so a config works from any directory.
Config values are data: only `model.source` and data sources written as `file.py:function`
import code, as documented.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from dlopt.errors import ConfigError
from dlopt.harness.executors.targets import Target, check_targets
from dlopt.harness.metrics import TASKS  # auto (from the labels), ..., none: no task metrics
from dlopt.path_safety import check_path_segment

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_SCHEMA_VERSION = 1
RECIPE_KINDS = ("quantize", "prune", "build")
# The FP32 reference's name: its folder, rows and gates are the gate's own.
REFERENCE_VARIANT = "fp32"
VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


@dataclass(frozen=True)
class ModelConfig:
    """[model]: the source, its weights and input specs."""

    source: str
    weights: str | None = None
    inputs: tuple[str, ...] = ()
    # Load pickles that hold more than tensors (weights, .pt2): only for files you trust.
    trust_pickle: bool = False


@dataclass(frozen=True)
class DataConfig:
    """[data]: evaluation and calibration data sources and the task.

    `task` chooses the task metrics of the bench rows (and the loss of a prune recipe's
    fine-tuning); `calibration_limit` is the calibration samples of every recipe that does
    not set its own `calibration_size`.
    """

    evaluation: str | None = None
    calibration: str | None = None
    task: str = "auto"
    evaluation_limit: int | None = None
    calibration_limit: int = 300

    def __post_init__(self) -> None:
        _check_choice("data.task", self.task, TASKS)
        _check_positive("data.evaluation_limit", self.evaluation_limit, allow_none=True)
        _check_positive("data.calibration_limit", self.calibration_limit)


@dataclass(frozen=True)
class VariantConfig:
    """[[variants]]: a name and one recipe (quantize, prune or build), kept as given.

    The recipe's own keys are validated by the step's options class when the gate runs it.
    """

    name: str
    kind: str
    recipe: Mapping[str, Any]
    backends: tuple[str, ...] = ()


@dataclass(frozen=True)
class BenchConfig:
    """[bench]: where and how long to measure: timed runs last `min_time_s`, and stop at
    `max_iterations` rounds if that comes first."""

    backends: tuple[str, ...] = ("onnxruntime",)
    optional_backends: tuple[str, ...] = ()
    batch_size: int = 1
    threads: int | None = None
    min_time_s: float = 2.0
    max_iterations: int = 2000
    timeout_s: float = 600.0
    # The evaluation set in this many index ranges, one worker each; drift and metrics merged.
    eval_shards: int = 1

    def __post_init__(self) -> None:
        if not self.backends:
            raise ConfigError("bench.backends is empty", "list at least one backend")
        _check_positive("bench.batch_size", self.batch_size)
        _check_positive("bench.eval_shards", self.eval_shards)
        _check_positive("bench.threads", self.threads, allow_none=True)
        _check_positive("bench.min_time_s", self.min_time_s)
        _check_positive("bench.max_iterations", self.max_iterations)
        _check_positive("bench.timeout_s", self.timeout_s)
        unknown = set(self.optional_backends) - set(self.backends)
        if unknown:
            raise ConfigError(
                f"bench.optional_backends names {sorted(unknown)} not in bench.backends",
                "an optional backend must also be listed in bench.backends",
            )


@dataclass(frozen=True)
class Thresholds:
    """[gate] (and [gate.variants.NAME]): every threshold is optional."""

    accuracy_drop_max: float | None = None
    relative_accuracy_min: float | None = None
    cosine_min: float | None = None
    top1_agreement_min: float | None = None
    kl_max: float | None = None
    latency_p50_ms_max: float | None = None
    latency_p99_ms_max: float | None = None
    speedup_min: float | None = None
    peak_memory_mb_max: float | None = None
    model_size_mb_max: float | None = None
    latency_regression_max_pct: float | None = None
    accuracy_regression_max: float | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            key = f"gate.{item.name}"
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{key} = {value!r} is not a number", "give a number")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{key} = {value!r} is out of range", "give a number >= 0")
        for name in (
            "relative_accuracy_min",
            "cosine_min",
            "top1_agreement_min",
            "accuracy_drop_max",
            "accuracy_regression_max",
        ):
            value = getattr(self, name)
            if value is not None and value > 1:
                raise ConfigError(
                    f"gate.{name} = {value!r} is out of range",
                    "it is a fraction between 0 and 1 (0.99, not 99)",
                )

    def merged_with(self, overrides: Thresholds) -> Thresholds:
        """These thresholds, with the ones set in `overrides` replacing them."""
        values = {
            item.name: getattr(overrides, item.name)
            if getattr(overrides, item.name) is not None
            else getattr(self, item.name)
            for item in fields(self)
        }
        return Thresholds(**values)

    def active(self) -> dict[str, float]:
        """Only the thresholds that are set."""
        return {
            item.name: getattr(self, item.name)
            for item in fields(self)
            if getattr(self, item.name) is not None
        }


@dataclass(frozen=True)
class TrackingConfig:
    """[tracking]: log every gate run to MLflow (`mlflow`: a tracking URI; `dlopt gate
    --mlflow` with no URI logs to sqlite:///mlflow.db beside the reports) in `experiment`
    (default: the config's folder name)."""

    mlflow: str | None = None
    experiment: str | None = None

    def __post_init__(self) -> None:
        for key in ("mlflow", "experiment"):
            value = getattr(self, key)
            if value is not None and not value.strip():
                raise ConfigError(f"tracking.{key} is empty", f"give tracking.{key} or drop it")


@dataclass(frozen=True)
class GateConfig:
    """A whole `dlopt gate` config."""

    path: Path
    model: ModelConfig
    data: DataConfig
    variants: tuple[VariantConfig, ...]
    bench: BenchConfig
    thresholds: Thresholds
    variant_thresholds: Mapping[str, Thresholds] = field(default_factory=dict)
    targets: tuple[Target, ...] = ()
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def thresholds_for(self, variant: str) -> Thresholds:
        overrides = self.variant_thresholds.get(variant)
        return self.thresholds.merged_with(overrides) if overrides else self.thresholds


def load_gate_config(path: Path) -> GateConfig:
    """Read and validate a gate config; raises ConfigError naming the key and the fix."""
    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        raise ConfigError(f"config {path} is {what}", "give the path of a dlopt.toml file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}", "fix the syntax") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config {path}: {error}") from error
    return parse_gate_config(raw, path)


def parse_gate_config(raw: Mapping[str, Any], path: Path) -> GateConfig:
    """Validate a parsed TOML document (see `load_gate_config`)."""
    _check_keys(
        "",
        raw,
        {"schema_version", "model", "data", "variants", "bench", "gate", "targets", "tracking"},
    )
    version = raw.get("schema_version", CONFIG_SCHEMA_VERSION)
    if version != CONFIG_SCHEMA_VERSION:
        raise ConfigError(
            f"schema_version = {version!r} is not supported",
            f"this dlopt reads schema_version {CONFIG_SCHEMA_VERSION}",
        )
    base = path.resolve().parent
    if "model" not in raw:
        raise ConfigError(f"{path} has no [model] table", 'add [model] with source = "..."')
    model = _build(ModelConfig, "model", raw["model"])
    model = ModelConfig(
        source=resolve_reference(model.source, base),
        weights=str(_resolve_path(model.weights, base)) if model.weights else None,
        inputs=tuple(model.inputs),
        trust_pickle=model.trust_pickle,
    )
    data = _build(DataConfig, "data", raw.get("data", {}))
    data = DataConfig(
        evaluation=data_reference(data.evaluation, base, model.source),
        calibration=data_reference(data.calibration, base, model.source),
        task=data.task,
        evaluation_limit=data.evaluation_limit,
        calibration_limit=data.calibration_limit,
    )
    variants = tuple(_variant(i, item) for i, item in enumerate(_list(raw, "variants")))
    names = [variant.name for variant in variants]
    _check_variant_names(names)
    bench_raw = dict(raw.get("bench", {}))
    bench = _build(BenchConfig, "bench", bench_raw)
    gate_raw = dict(raw.get("gate", {}))
    per_variant_raw = gate_raw.pop("variants", {})
    thresholds = _build(Thresholds, "gate", gate_raw)
    if not isinstance(per_variant_raw, Mapping):
        raise ConfigError("gate.variants must be a table of [gate.variants.NAME] tables")
    variant_thresholds = {}
    for name, table in per_variant_raw.items():
        if name not in names:
            raise ConfigError(
                f"[gate.variants.{name}] names no variant",
                f"variants are: {', '.join(names) or 'none'}",
            )
        variant_thresholds[name] = _build(Thresholds, f"gate.variants.{name}", table)
    targets = tuple(_target(i, item) for i, item in enumerate(_list(raw, "targets")))
    check_targets(targets, bench.backends)
    tracking = _build(TrackingConfig, "tracking", raw.get("tracking", {}))
    return GateConfig(
        path, model, data, variants, bench, thresholds, variant_thresholds, targets, tracking
    )


def _target(index: int, raw: Any) -> Target:
    """[[targets]]: a name, the Ray resources a node must have, and the backends run there."""
    where = f"targets[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} is not a table", "write each target as a [[targets]] table")
    _check_keys(where, raw, {"name", "resources", "backends"})
    for key in ("name", "backends"):
        if key not in raw:
            raise ConfigError(
                f"{where} has no {key}",
                'e.g. name = "gpu-h100", resources = { GPU = 1 }, backends = ["tensorrt"]',
            )
    backends = raw["backends"]
    if not isinstance(backends, list):
        raise ConfigError(f"{where}.backends = {backends!r} is not a list of backend names")
    return Target(raw["name"], raw.get("resources", {}), tuple(backends))


def _check_variant_names(names: list[str]) -> None:
    """Each name becomes a folder (artifacts/NAME): unique even where case does not count
    (macOS, Windows), and never the reference's."""
    for name in names:
        if name.casefold() == REFERENCE_VARIANT:
            raise ConfigError(
                f"variant name {name!r} is reserved for the FP32 reference",
                "give the variant another name; the reference is always measured",
            )
    folded = [name.casefold() for name in names]
    duplicated = sorted({name for name in names if folded.count(name.casefold()) > 1})
    if duplicated:
        raise ConfigError(
            f"variant names {duplicated} are used twice (names that differ only in case are "
            "one folder on macOS and Windows)",
            "give each variant a unique name",
        )


def _variant(index: int, raw: Any) -> VariantConfig:
    where = f"variants[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} is not a table", "write each variant as a [[variants]] table")
    _check_keys(where, raw, {"name", "backends", *RECIPE_KINDS})
    name = raw.get("name")
    if not isinstance(name, str) or not VARIANT_NAME.match(name):
        raise ConfigError(
            f"{where}.name = {name!r} is not a valid name",
            "use letters, digits, _ . - (up to 64 characters), starting with a letter or digit",
        )
    check_path_segment(name, f"{where}.name")
    kinds = [kind for kind in RECIPE_KINDS if kind in raw]
    if len(kinds) != 1:
        raise ConfigError(
            f"variant {name!r} has {len(kinds)} recipes ({', '.join(kinds) or 'none'})",
            f"give exactly one of {', '.join(RECIPE_KINDS)}",
        )
    recipe = raw[kinds[0]]
    if not isinstance(recipe, Mapping):
        raise ConfigError(
            f"variant {name!r}: {kinds[0]} = {recipe!r} is not a table",
            f'write it as {kinds[0]} = {{ key = "value", ... }}',
        )
    backends = raw.get("backends", ())
    if not isinstance(backends, (list, tuple)) or not all(isinstance(b, str) for b in backends):
        raise ConfigError(f"{where}.backends = {backends!r} is not a list of backend names")
    return VariantConfig(name, kinds[0], dict(recipe), tuple(backends))


def _build(cls: Any, where: str, raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[{where}] is not a table", f"write it as a [{where}] table")
    allowed = {item.name for item in fields(cls)}
    _check_keys(where, raw, allowed)
    values = {}
    for item in fields(cls):
        if item.name not in raw:
            continue
        value = raw[item.name]
        values[item.name] = tuple(value) if isinstance(value, list) else value
    missing = [
        item.name
        for item in fields(cls)
        if item.name not in values and item.default is MISSING and item.default_factory is MISSING
    ]
    if missing:
        raise ConfigError(f"[{where}] needs {', '.join(missing)}", f"add {missing[0]} = ...")
    _check_types(cls, where, values)
    return cls(**values)


def _check_types(cls: Any, where: str, values: Mapping[str, Any]) -> None:
    for item in fields(cls):
        if item.name not in values:
            continue
        value, annotation = values[item.name], str(item.type)
        ok = True
        if annotation.startswith("tuple"):
            ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
        elif annotation.startswith("bool"):
            ok = isinstance(value, bool)
        elif annotation.startswith("str"):
            ok = isinstance(value, str) or (value is None and "None" in annotation)
        elif annotation.startswith("int"):
            if isinstance(value, float):  # TOML's 1.0 is a float: a count must be written 1
                raise ConfigError(
                    f"{where}.{item.name} = {value!r} is not an integer",
                    f"write a whole number without a decimal point, e.g. {where}.{item.name} = "
                    f"{int(value) if value.is_integer() and value >= 1 else 1}",
                )
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif annotation.startswith("float"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise ConfigError(
                f"{where}.{item.name} = {value!r} has the wrong type",
                f"expected {annotation.replace(' | None', '')}",
            )


def _check_keys(where: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]}", f"allowed keys here: {', '.join(sorted(allowed))}"
        )


def _check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} = {value!r} is not allowed", f"use one of {', '.join(allowed)}")


def _check_positive(key: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{key} = {value!r} is out of range", "give a number > 0")


def _list(raw: Mapping[str, Any], key: str) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list of [[{key}]] tables")
    return value


def _resolve_path(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def data_reference(text: str | None, base: Path, model_source: str) -> str | None:
    """A data source resolved like any reference; `text:` data gets the model's tokenizer."""
    if not text:
        return None
    from dlopt.text_data import resolve_tokenizer

    return resolve_tokenizer(resolve_reference(text, base), model_source)


def resolve_reference(text: str | None, base: Path) -> str:
    """Make `model.py:factory` and plain file paths relative to the config's folder."""
    if text is None:
        raise ConfigError("a source is missing")
    if text in ("synthetic",) or text.startswith("torchvision:"):
        return text
    for prefix in ("hf:", "text:"):  # hf:FOLDER[#TASK], text:FILE[@TOKENIZER_FOLDER]
        if text.startswith(prefix):
            body, sep, tail = text[len(prefix) :].partition("#" if prefix == "hf:" else "@")
            resolved = f"{prefix}{_resolve_path(body, base)}"
            if sep:
                resolved += sep + (tail if prefix == "hf:" else str(_resolve_path(tail, base)))
            return resolved
    target, sep, attribute = text.rpartition(":")
    if sep and (target.endswith(".py") or "/" in target):
        return f"{_resolve_path(target, base)}:{attribute}"
    if not sep and ("/" in text or Path(text).suffix):
        return str(_resolve_path(text, base))
    return text
