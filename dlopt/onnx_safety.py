"""Refuse ONNX files whose external-data paths escape the model's folder.

ONNX tensors may keep their bytes in files named by a `location` string; absolute paths,
`..` segments or links out of the folder let a model read (or, through tools that re-save it,
overwrite) arbitrary files: CVE-2024-27318 and CVE-2024-27319 in onnx's own loader. Checked
here, before any runtime opens the file, because not every runtime we call repeats the check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dlopt.errors import SourceError, first_line


def read_onnx_structure(path: Path) -> Any:
    """The ModelProto of a user's ONNX file without its external tensor bytes; SourceError in
    one line when it does not parse."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as error:
        raise SourceError(
            f"{path} is not a readable ONNX model: {first_line(error, 200)}",
            "the file may be truncated, corrupt, or another format",
        ) from error


def check_external_data_paths(model_path: Path) -> list[Path]:
    """The external-data files of an ONNX model; raises SourceError when one escapes its folder.

    Reads only the graph's structure (no tensor bytes).
    """
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    model = read_onnx_structure(model_path)
    folder = model_path.resolve().parent
    files: list[Path] = []
    for tensor in _all_tensors(model.graph):
        if not uses_external_data(tensor):
            continue
        location = ExternalDataInfo(tensor).location
        candidate = Path(location)
        resolved = (folder / candidate).resolve()
        if candidate.is_absolute() or not resolved.is_relative_to(folder):
            raise SourceError(
                f"{model_path}: tensor {tensor.name!r} points its external data at {location!r}, "
                "outside the model's folder (a path-traversal attack, CVE-2024-27318)",
                "refusing to load it; only use models whose external data sits beside them",
            )
        files.append(resolved)
    return files


def _all_tensors(graph: Any) -> Iterator[Any]:
    """Initializers and tensor attributes of a graph and its subgraphs (If, Loop, Scan)."""
    import onnx

    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                yield attribute.t
            elif attribute.type == onnx.AttributeProto.TENSORS:
                yield from attribute.tensors
            elif attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_tensors(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from _all_tensors(subgraph)
