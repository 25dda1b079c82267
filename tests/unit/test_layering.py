"""The package layout shows the flow, and imports keep to it: core <- backends <- harness <-
optimize/report <- gate <- commands <- cli, nothing imports upward, and no module imports
itself back through others (a cycle). Function-level and TYPE_CHECKING imports count too: a
lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dlopt"

# Layers, lowest first. A module may import its own layer and the ones below.
LAYERS: list[tuple[str, ...]] = [
    ("dlopt",),  # the core: dlopt/*.py (errors, specs, sources, data, artifacts, ...)
    ("dlopt.backends",),
    ("dlopt.harness",),
    ("dlopt.optimize", "dlopt.report"),
    ("dlopt.gate",),
    ("dlopt.commands",),
    ("dlopt.cli", "dlopt.__main__"),
]
# Inside optimize/: shared helpers, then export, then the steps that start from an export,
# then build (which may start from any of them).
OPTIMIZE_LAYERS: list[tuple[str, ...]] = [
    ("dlopt.optimize.runners", "dlopt.optimize.openvino_ir", "dlopt.optimize.onnx_value_info"),
    ("dlopt.optimize.export",),
    ("dlopt.optimize.model_input",),
    ("dlopt.optimize.quantize", "dlopt.optimize.prune"),
    ("dlopt.optimize.build",),
]


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(path, package): path for path in package.rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The dlopt modules `path` imports anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("dlopt"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dlopt"):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return found


def rank(module: str, layers: list[tuple[str, ...]]) -> int | None:
    best: tuple[int, int] | None = None  # (length of the matched prefix, layer index)
    for index, prefixes in enumerate(layers):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = all_modules(package)
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def upward_imports(edges: dict[str, set[str]], layers: list[tuple[str, ...]]) -> list[str]:
    upward = []
    for module, targets in edges.items():
        here = rank(module, layers)
        for target in targets:
            there = rank(target, layers)
            if here is not None and there is not None and there > here:
                upward.append(f"{module} -> {target}")
    return sorted(upward)


def find_cycles(edges: dict[str, set[str]]) -> list[str]:
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if target not in edges:
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    return cycles


def test_every_module_sits_in_a_layer() -> None:
    unplaced = [name for name in all_modules() if rank(name, LAYERS) is None]
    assert unplaced == []


@pytest.mark.parametrize("layers", [LAYERS, OPTIMIZE_LAYERS], ids=["packages", "optimize"])
def test_nothing_imports_upward(layers: list[tuple[str, ...]]) -> None:
    assert upward_imports(graph(), layers) == []


def test_no_import_cycles() -> None:
    assert find_cycles(graph()) == []


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / "dlopt"
    (package / "harness").mkdir(parents=True)
    (package / "commands").mkdir()
    for folder in (package, package / "harness", package / "commands"):
        (folder / "__init__.py").write_text("")
    (package / "specs.py").write_text("def f():\n    from dlopt.commands import bench\n")
    (package / "commands" / "bench.py").write_text("import dlopt.specs\n")
    (package / "harness" / "a.py").write_text("from dlopt.harness import b\n")
    (package / "harness" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dlopt.harness.a import x\n"
    )
    edges = graph(package)

    assert upward_imports(edges, LAYERS) == ["dlopt.specs -> dlopt.commands.bench"]
    assert sorted(find_cycles(edges)) == [
        "dlopt.commands.bench -> dlopt.specs -> dlopt.commands.bench",
        "dlopt.harness.a -> dlopt.harness.b -> dlopt.harness.a",
    ]
