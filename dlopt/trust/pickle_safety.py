"""Refuse model files whose loading would run code, before torch opens them.

`torch.export.load` (2.13) is not safe on untrusted files (see NOTES.md):
- it unpickles the sample inputs with `weights_only=True` and, when that refuses, retries with
  `weights_only=False`; pickled weights and constants load with `weights_only=False`, "opaque"
  constants with plain `pickle.loads`: a pickle's `__reduce__` runs any function it names;
- an AOTInductor package inside the archive is a native library that loading dlopens;
- graph nodes name their targets as dotted paths that the deserializer resolves with `getattr`
  from `torch`, `operator` or `math` and calls when the model runs (`torch.serialization.os.
  system` is such a path), and symbolic shapes are parsed with `sympy.sympify`, which evaluates.

So a `.pt2` is read once into memory, checked here, and only then handed to torch (from the
same bytes, so the file cannot change in between). Pickles are scanned statically, without
executing them, by torch's own scanners (`torch.serialization.get_unsafe_globals_in_checkpoint`
for `torch.save` payloads, the weights-only scanner for raw pickles) against the allowlist that
`torch.load(weights_only=True)` uses: nothing is unpickled here. `--trust-pickle` (or the gate
config's `model.trust_pickle`) skips the checks for files the user trusts.

TorchScript needs no scan: `torch.jit.load` unpickles with a C++ unpickler that resolves only
TorchScript and torch types (a Python global is "Unknown type name"), and dlopt never reads
TorchScript extra files. Weights load with `torch.load(weights_only=True)` (dlopt.sources), and
`.npz` data refuses object arrays (dlopt.data).
"""

from __future__ import annotations

import functools
import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dlopt.errors import SourceError

TRUST_HINT = "pass --trust-pickle (gate config: [model] trust_pickle = true) only if you trust it"
# Archive members torch unpickles (after the archive's root folder); the config files beside
# them are JSON and list which weight and constant files are raw tensor bytes.
_UNPICKLED_DIRS = ("data/sample_inputs/", "data/weights/", "data/constants/")
_PAYLOAD_CONFIGS = {
    "data/weights/": re.compile(r"^data/weights/[^/]+_weights_config\.json$"),
    "data/constants/": re.compile(r"^data/constants/[^/]+_constants_config\.json$"),
}
# The pre-2.8 layout: torch.save payloads at the archive's top level.
_LEGACY_PAYLOADS = (
    "serialized_state_dict.json",
    "serialized_constants.json",
    "serialized_example_inputs.json",
)
_NATIVE_CODE_DIRS = ("data/aotinductor/",)
# Symbolic-shape expressions as torch writes them (sympy's srepr): numbers, symbols, arithmetic,
# comparisons and calls of sympy / torch expression classes. No dunders or attribute access.
_EXPRESSION = re.compile(r"^[A-Za-z0-9_ +\-*/%(),.<>=!']*$")
_QUOTED = re.compile(r"'([^']*)'")
_QUOTED_NAME_OR_NUMBER = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*|[-+]?[0-9.]+(?:e[-+]?[0-9]+)?)$")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_SAFE_OPERATOR_TARGETS = frozenset(
    (
        "getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs",
        "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "xor", "not_", "invert", "lshift",
        "rshift",
    )
)  # fmt: skip


class UnsafeModelError(SourceError):
    """A model file would run code when loaded, and the user did not say they trust it."""


def load_exported_program(path: Path, allow_pickle: bool = False) -> Any:
    """`torch.export.load` of `path`, refused (UnsafeModelError) when loading could run code.

    The file is read once; the checks and torch see the same bytes.
    """
    import torch

    data = path.read_bytes()
    if not allow_pickle:
        check_exported_program(data, str(path))
    return torch.export.load(io.BytesIO(data))


def check_exported_program(data: bytes, where: str) -> None:
    """Raise UnsafeModelError naming the first member of a `.pt2` archive that could run code."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise SourceError(f"{where} is not a zip archive ({error})", "re-save it") from error
    with archive:
        members = {_inner_name(name): name for name in archive.namelist()}
        raw_tensors = _raw_tensor_members(archive, members)
        for inner, name in members.items():
            problem = None
            if inner.startswith(_NATIVE_CODE_DIRS):
                problem = "holds AOTInductor native code, which loading the archive runs"
            elif inner.startswith("models/") and inner.endswith(".json"):
                problem = _graph_problem(archive.read(name))
            elif _is_unpickled(inner) and inner not in raw_tensors:
                problem = pickle_problem(archive.read(name))
            if problem is not None:
                raise UnsafeModelError(
                    f"refused to load {where}: its member {inner} {problem}, and loading it "
                    "could run code",
                    TRUST_HINT,
                )


def pickle_problem(payload: bytes) -> str | None:
    """Why unpickling `payload` (a `torch.save` zip or a raw pickle) could run code, or None.

    Static: the pickle's opcodes are read, never executed. Globals outside torch's weights-only
    allowlist, opcodes outside the weights-only subset, and bytes after the pickle (which a
    legacy `torch.load` would unpickle next) are problems.
    """
    import torch
    from torch import _weights_only_unpickler

    if payload.startswith(b"PK\x03\x04"):
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(payload))
        except Exception as error:  # not a checkpoint, or opcodes weights_only cannot read
            return f"is a pickle dlopt cannot check ({type(error).__name__}: {error})"
        return _globals_problem(unsafe)
    stream = io.BytesIO(payload)
    try:
        found = _weights_only_unpickler.get_globals_in_pkl(stream)
    except Exception as error:
        return f"is a pickle dlopt cannot check ({type(error).__name__}: {error})"
    allowed = set(_weights_only_unpickler._get_allowed_globals())
    allowed |= set(_weights_only_unpickler._get_user_allowed_globals())
    if stream.tell() != len(payload):
        return "has data after its pickle"
    return _globals_problem(sorted(found - allowed))


def _globals_problem(unsafe: list[str]) -> str | None:
    if not unsafe:
        return None
    shown = ", ".join(sorted(unsafe)[:3]) + (" ..." if len(unsafe) > 3 else "")
    return f"is a pickle that calls {shown}"


def _inner_name(name: str) -> str:
    """A member's name below the archive's root folder (`model/data/x` -> `data/x`)."""
    return name.split("/", 1)[1] if "/" in name else name


def _is_unpickled(inner: str) -> bool:
    if inner in _LEGACY_PAYLOADS:
        return True
    if not inner.startswith(_UNPICKLED_DIRS):
        return False
    return not any(pattern.match(inner) for pattern in _PAYLOAD_CONFIGS.values())


def _raw_tensor_members(archive: zipfile.ZipFile, members: dict[str, str]) -> set[str]:
    """Weight and constant files that torch reads as raw tensor bytes, never unpickles: marked
    `use_pickle: false` in their config and never marked pickled by another entry; constants
    only with torch's `tensor_` prefix (it unpickles `custom_obj_` and `opaque_obj_` anyway)."""
    raw: set[str] = set()
    pickled: set[str] = set()
    for folder, pattern in _PAYLOAD_CONFIGS.items():
        for inner, name in members.items():
            if not pattern.match(inner):
                continue
            try:
                config = json.loads(archive.read(name)).get("config", {})
            except (ValueError, AttributeError):
                continue  # torch fails on it too; the members are all checked as pickles
            for entry in config.values() if isinstance(config, dict) else ():
                path_name = entry.get("path_name") if isinstance(entry, dict) else None
                if not isinstance(path_name, str):
                    continue
                is_raw = entry.get("use_pickle") is False and (
                    folder == "data/weights/" or path_name.startswith("tensor_")
                )
                (raw if is_raw else pickled).add(folder + path_name)
    return raw - pickled


def _graph_problem(document: bytes) -> str | None:
    """A node target that is not an operator, or a shape expression that is not arithmetic."""
    try:
        graph = json.loads(document)
    except ValueError:
        return None  # torch refuses it as well, without running anything
    for target in _node_targets(graph):
        if not _is_operator_target(target):
            return f"names the graph target {target!r}, which is not a torch operator"
    for expression in _shape_expressions(graph):
        if not _is_arithmetic(expression):
            return f"has the shape expression {expression[:80]!r}, which is not arithmetic"
    return None


def _node_targets(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        target = value.get("target")
        if isinstance(target, str) and "inputs" in value and "outputs" in value:
            yield target
        for item in value.values():
            yield from _node_targets(item)
    elif isinstance(value, list):
        for item in value:
            yield from _node_targets(item)


def _shape_expressions(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "expr_str" and isinstance(item, str):
                yield item
            elif key == "range_constraints" and isinstance(item, dict):
                yield from (str(name) for name in item)
            yield from _shape_expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _shape_expressions(item)


def _is_operator_target(target: str) -> bool:
    """Resolve the target as torch's deserializer does (getattr from torch, operator or math)
    and accept only torch operators and the arithmetic it uses for symbolic sizes."""
    import math
    import operator

    import torch

    parts = target.split(".")
    if any(part.startswith("__") for part in parts):
        return False
    if parts[0] == "_operator":
        return len(parts) == 2 and parts[1] in _SAFE_OPERATOR_TARGETS
    if parts[0] == "math":
        return len(parts) == 2 and callable(getattr(math, parts[1], None))
    if parts[0] != "torch":
        return not target.startswith("#")  # an unresolved name fails in torch; extensions run
    resolved: Any = torch
    for part in parts[1:]:
        if not hasattr(resolved, part):
            return True  # stays a string, which torch refuses without calling anything
        resolved = getattr(resolved, part)
    if isinstance(resolved, (torch._ops.OpOverload, torch._ops.HigherOrderOperator)):
        return True
    return resolved in (operator.getitem, *_torch_sym_functions(torch))


def _torch_sym_functions(torch: Any) -> tuple[Any, ...]:
    names = ("sym_not", "sym_float", "sym_int", "sym_max", "sym_min", "sym_ite", "sym_sqrt")
    return tuple(getattr(torch, name) for name in names if hasattr(torch, name))


def _is_arithmetic(expression: str) -> bool:
    """Whether a shape expression is sympy's `srepr` of arithmetic (`Mul(Integer(2),
    Symbol('s17', positive=True, integer=True))`) or plain arithmetic: calls only of sympy and
    torch expression classes, strings only of a name or a number, no dunders, no attributes."""
    if not _EXPRESSION.match(expression) or "__" in expression:
        return False
    for quoted in _QUOTED.findall(expression):
        if not _QUOTED_NAME_OR_NUMBER.match(quoted):
            return False
    unquoted = _QUOTED.sub("''", expression)
    if re.search(r"\.(?!\d)", unquoted):  # a dot only inside a number
        return False
    return all(name in _shape_function_names() for name in _CALL.findall(unquoted))


@functools.cache
def _shape_function_names() -> frozenset[str]:
    """Expression classes: sympy's (`Symbol`, `Integer`, `Mul`, ...) and torch's shape
    functions (`FloorDiv`, `ModularIndexing`, ...). Building one evaluates nothing else."""
    import sympy
    from torch.utils._sympy import functions

    names = {
        name
        for module in (sympy, functions)
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, sympy.Basic)
    }
    return frozenset(names)
