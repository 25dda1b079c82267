"""Strip what an artifact says about the machine that built it, before it is hashed.

What the tools write (checked on torch 2.13, onnx 1.23, OpenVINO 2026.4):
- ONNX from the dynamo exporter: every node's metadata_props hold `pkg.torch.onnx.stack_trace`
  (absolute paths and lines of the user's source), `class_hierarchy`, `name_scopes`, `fx_node`
  and `namespace`; values and initializers hold `pkg.torch.export.graph_signature.*` and
  `original_node_name`; the graph holds the ExportedProgram's graph signature and range
  constraints; onnxscript's optimizer adds `pkg.onnxscript.*`. The legacy exporter writes stack
  traces into node doc strings.
- TorchScript: `code/**.debug_pkl` members hold source ranges with the absolute paths of every
  Python file the model ran through (the user's and the virtual environment's).
- OpenVINO IR: `rt_info/conversion_parameters` records how the converter was called.
Whole debug fields are dropped (every metadata entry and doc string of nodes, values, graphs
and functions; the model's tool-namespaced `pkg.*` keys; debug pickles; conversion parameters)
rather than matching paths with patterns, which would miss a user name in a class path. None of
it is read at run time. `--keep-debug-metadata` keeps it all (for debugging an export).

onnx_ir's ClearMetadataAndDocStringPass was the obvious tool, but it leaves value, initializer
and model metadata in place and re-serializes the graph through its IR; this walks the protobuf.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import xml.etree.ElementTree as ElementTree
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_KEEP = contextvars.ContextVar("dlopt_keep_debug_metadata", default=False)
TOOL_NAMESPACE = "pkg."  # the ONNX convention for tool-specific model metadata keys


@dataclass
class StripReport:
    """What was removed from one artifact file, and its size before and after."""

    kept: bool
    entries_removed: int
    size_bytes_before: int
    size_bytes_after: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def keep_debug_metadata(keep: bool) -> None:
    """From now on (in this context), artifacts keep their debug metadata or lose it."""
    _KEEP.set(keep)


def debug_metadata_kept() -> bool:
    return _KEEP.get()


@contextlib.contextmanager
def keeping_debug_metadata(keep: bool) -> Iterator[None]:
    """Within this block, artifacts keep their debug metadata (`--keep-debug-metadata`)."""
    token = _KEEP.set(keep)
    try:
        yield
    finally:
        _KEEP.reset(token)


def strip_debug_metadata(path: Path) -> StripReport | None:
    """Remove build-machine metadata from an ONNX, TorchScript or OpenVINO IR file in place.

    Returns what was removed, or None for formats that carry none (TensorRT plans, .pt2
    sources, encrypted copies). Only the file's metadata changes, never its computation.
    """
    strip = _STRIPPERS.get(path.suffix)
    if strip is None or (path.suffix != ".onnx" and not _is_torchscript_or_xml(path)):
        return None
    before = path.stat().st_size
    if _KEEP.get():
        return StripReport(True, 0, before, before)
    removed = strip(path)
    return StripReport(False, removed, before, path.stat().st_size)


def _is_torchscript_or_xml(path: Path) -> bool:
    if path.suffix == ".xml":
        return True
    return zipfile.is_zipfile(path)


def _strip_onnx(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    removed = _clear_doc(model)
    for entry in list(model.metadata_props):
        if entry.key.startswith(TOOL_NAMESPACE):
            model.metadata_props.remove(entry)
            removed += 1
    for graph in _graphs(model.graph.node, model.graph):
        removed += _clear_graph(graph)
    for function in model.functions:
        removed += _clear(function)
        removed += sum(_clear(value) for value in getattr(function, "value_info", ()))
        for graph in _graphs(function.node):
            removed += _clear_graph(graph)
    if removed:
        onnx.save(model, str(path))  # external-data references are written back unchanged
    return removed


def _clear_graph(graph: Any) -> int:
    """A graph's (or a function's node list's) own entries; subgraphs come from `_graphs`."""
    removed = 0 if isinstance(graph, list) else _clear(graph)
    nodes = graph if isinstance(graph, list) else graph.node
    removed += sum(_clear(node) for node in nodes)
    if not isinstance(graph, list):
        for item in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
            removed += _clear(item)
    return removed


def _graphs(nodes: Any, graph: Any = None) -> Iterator[Any]:
    """`graph` (or, for a function, its node list) and every subgraph of If, Loop and Scan
    nodes below it, depth first."""
    yield graph if graph is not None else list(nodes)
    for node in nodes:
        for attribute in node.attribute:
            subgraphs = [attribute.g] if attribute.HasField("g") else []
            for subgraph in [*subgraphs, *attribute.graphs]:
                yield from _graphs(subgraph.node, subgraph)


def _clear(item: Any) -> int:
    removed = _clear_doc(item)
    metadata = getattr(item, "metadata_props", None)
    if metadata:
        removed += len(metadata)
        del metadata[:]
    return removed


def _clear_doc(item: Any) -> int:
    if getattr(item, "doc_string", ""):
        item.doc_string = ""
        return 1
    return 0


def _strip_torchscript(path: Path) -> int:
    """Rewrite the archive without its debug pickles (torch.jit.load does not need them)."""
    with zipfile.ZipFile(path) as archive:
        debug = [info for info in archive.infolist() if info.filename.endswith(".debug_pkl")]
        if not debug:
            return 0
        temporary = path.with_name(f".{path.name}.strip.tmp")
        try:
            with zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as stripped:
                for info in archive.infolist():
                    if not info.filename.endswith(".debug_pkl"):
                        stripped.writestr(info.filename, archive.read(info))
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return len(debug)


def _strip_openvino_ir(path: Path) -> int:
    tree = ElementTree.parse(path)
    removed = 0
    for rt_info in tree.getroot().iter("rt_info"):
        for entry in list(rt_info):
            if entry.tag == "conversion_parameters":
                removed += max(1, len(entry))
                rt_info.remove(entry)
    if removed:
        tree.write(path, encoding="utf-8", xml_declaration=True)
    return removed


_STRIPPERS = {
    ".onnx": _strip_onnx,
    ".xml": _strip_openvino_ir,
    ".ts": _strip_torchscript,
    ".jit": _strip_torchscript,
}
