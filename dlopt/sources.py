"""Model sources: what the user points a command at, and loading it.

Accepted forms:
- `path/to/model.py:factory` or `package.module:factory`: a callable returning an `nn.Module`,
  optionally with weights (a state_dict file: `.pt`/`.pth`/`.bin`, or `.safetensors`);
- a TorchScript file, a `torch.export` ExportedProgram (`.pt2`);
- `hf:PATH[#TASK]`: a local Hugging Face model folder (`dlopt.hf_source`, extra `dlopt[hf]`);
- `torchvision:NAME`: a torchvision architecture, weights with `--weights`
  (`dlopt.torchvision_source`, extra `dlopt[torchvision]`);
- an ONNX file or an OpenVINO IR (`.xml`), for the commands that work on those.
File formats are recognised by their content, not only their extension, so an ONNX file named
`.pt` (or the reverse) gets a clear message instead of a parser traceback.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlopt.errors import InputSpecError, SourceError, WeightsError
from dlopt.specs import TensorSpec, parse_input_specs

if TYPE_CHECKING:
    import torch

FACTORY_HELP = (
    "a model source is path/to/model.py:factory, package.module:factory, hf:MODEL_FOLDER, "
    "torchvision:NAME, a TorchScript file, a .pt2 ExportedProgram or an .onnx file"
)
HF_PREFIX = "hf:"
TORCHVISION_PREFIX = "torchvision:"
_REFERENCE = re.compile(r"^(?P<target>.+):(?P<attr>[A-Za-z_][A-Za-z0-9_]*)$")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
TORCH_FORMATS = ("factory", "torchscript", "exported_program")
_KIND_NAMES = {
    "torchscript": "TorchScript",
    "exported_program": "torch.export ExportedProgram",
    "state_dict": "state_dict (weights)",
}


@dataclass(frozen=True)
class SourceRef:
    """A parsed model source: its kind and where it lives."""

    kind: str  # factory | torchscript | exported_program | onnx | openvino_ir
    text: str
    path: Path | None = None
    module: str | None = None
    attribute: str | None = None  # the factory; the hf task; the torchvision model name
    builder: str | None = None  # None (a Python factory), "hf" or "torchvision"


@dataclass
class LoadedModel:
    """A torch model ready to run in eval mode, and what we know about it."""

    module: torch.nn.Module
    ref: SourceRef
    default_inputs: list[TensorSpec] = field(default_factory=list)
    weights_sha256: str | None = None
    description: dict[str, Any] = field(default_factory=dict)
    weights_path: Path | None = None


def parse_source(text: str) -> SourceRef:
    """Recognise the kind of a model source; raises SourceError when it does not exist."""
    if text.startswith(HF_PREFIX):
        from dlopt.hf_source import split_hf_source

        folder, task = split_hf_source(text)
        return SourceRef("factory", text, path=folder, attribute=task, builder="hf")
    if text.startswith(TORCHVISION_PREFIX):
        name = text[len(TORCHVISION_PREFIX) :]
        if not _MODULE_NAME.match(name) or "." in name:
            raise SourceError(
                f"{text!r} names no torchvision model", "write it as torchvision:resnet50"
            )
        return SourceRef("factory", text, attribute=name, builder="torchvision")
    candidate = Path(text)
    if candidate.exists():
        kind = detect_file_format(candidate)
        if kind == "onnx":
            from dlopt.onnx_safety import check_external_data_paths

            check_external_data_paths(candidate)
        return SourceRef(kind, text, path=candidate)
    match = _REFERENCE.match(text)
    if match is None:
        raise SourceError(f"model source {text!r} is not a file", f"check the path; {FACTORY_HELP}")
    target, attribute = match.group("target"), match.group("attr")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise SourceError(
                f"model file {target} does not exist (from {text!r})",
                f"check the path; {FACTORY_HELP}",
            )
        return SourceRef("factory", text, path=path, attribute=attribute)
    if not _MODULE_NAME.match(target):
        raise SourceError(f"{target!r} in {text!r} is not a module name", FACTORY_HELP)
    return SourceRef("factory", text, module=target, attribute=attribute)


def detect_file_format(path: Path) -> str:
    """`torchscript`, `exported_program`, `state_dict`, `onnx`, `openvino_ir` or `encrypted`,
    by content."""
    if path.is_dir():
        raise SourceError(f"{path} is a folder, not a model file", FACTORY_HELP)
    try:
        with open(path, "rb") as stream:
            head = stream.read(8)
    except OSError as error:
        raise SourceError(
            f"cannot read {path}: {error.strerror}", "check its permissions"
        ) from error
    if not head:
        raise SourceError(f"{path} is empty", "re-create or re-download the model file")
    if head.startswith(b"DLOPTENC"):
        return "encrypted"  # dlopt.trust.encryption; the backends decrypt it in memory
    if head.startswith(b"PK\x03\x04"):
        kind = _torch_zip_kind(path)
        if path.suffix in (".onnx", ".xml"):
            raise SourceError(
                f"{path} is named {path.suffix} but is a {_KIND_NAMES[kind]} file",
                "rename it (.ts for TorchScript, .pt2 for an ExportedProgram) or give the "
                "model file you meant",
            )
        return kind
    if path.suffix == ".xml" or head.startswith(b"<?xml"):
        return "openvino_ir"
    if path.suffix in (".plan", ".engine"):
        return "tensorrt_plan"  # opaque bytes; the tensorrt backend checks its manifest
    if path.suffix in (".pt", ".pth", ".pt2", ".ts", ".jit", ".bin") and not _looks_like_onnx(head):
        raise SourceError(
            f"{path} is not a TorchScript, ExportedProgram or state_dict zip file",
            "it may be truncated or saved with an old torch; re-save it with torch.jit.save or "
            "torch.save",
        )
    if path.suffix == ".safetensors":
        raise SourceError(
            f"{path} holds weights only, not a model",
            "give the factory as model.py:factory and these weights with --weights",
        )
    return "onnx"


def _looks_like_onnx(head: bytes) -> bool:
    # ONNX ModelProto starts with ir_version (field 1, varint): tag byte 0x08.
    return head[:1] == b"\x08"


def _torch_zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise SourceError(
            f"{path} is a damaged zip file ({error})",
            "the file is truncated or corrupt; re-save it",
        ) from error
    if any(
        name.endswith("serialized_exported_program.json") or "/models/" in name for name in names
    ):
        return "exported_program"
    if any("/code/" in name for name in names) and any(
        name.endswith("constants.pkl") for name in names
    ):
        return "torchscript"
    if any(name.endswith("data.pkl") for name in names):
        return "state_dict"
    raise SourceError(f"{path} is a zip file but not a torch model", FACTORY_HELP)


def load_torch_model(
    source: str | SourceRef,
    weights: Path | None = None,
    allow_pickle: bool = False,
) -> LoadedModel:
    """Load a torch model from a source, in eval mode; raises SourceError or WeightsError.

    `allow_pickle` lets weights pickles hold more than tensors and skips the `.pt2` safety
    checks (dlopt.trust.pickle_safety): only for files the user trusts.
    """
    ref = parse_source(source) if isinstance(source, str) else source
    if ref.kind == "factory":
        module, default_inputs = _load_factory(ref)
    elif ref.kind == "torchscript":
        module, default_inputs = _load_torchscript(ref), []
    elif ref.kind == "exported_program":
        module, default_inputs = _load_exported_program(ref, allow_pickle), []
    elif ref.kind == "encrypted":
        raise SourceError(
            f"{ref.text} is an encrypted artifact; this command needs the model in plaintext",
            "bench, gate and verify run encrypted artifacts (with --key-file); to work on the "
            "model itself, use the plaintext it was encrypted from",
        )
    elif ref.kind == "state_dict":
        raise SourceError(
            f"{ref.text} holds weights (a state_dict), not a model",
            "give the factory as model.py:factory and this file with --weights",
        )
    else:
        raise SourceError(
            f"{ref.text} is an {ref.kind} file; this command needs a torch model",
            "give a torch model: model.py:factory, a TorchScript file or a .pt2 ExportedProgram",
        )
    weights_sha256 = None
    if weights is not None:
        if ref.kind != "factory" or ref.builder == "hf":
            raise WeightsError(
                f"--weights given for {ref.text}, which already holds its weights",
                "drop --weights, or give a model.py:factory source",
            )
        weights_sha256 = load_weights(module, weights, allow_pickle=allow_pickle)
    if ref.kind != "exported_program":  # an ExportedProgram's module refuses eval(); it is frozen
        module.eval()
    return LoadedModel(module, ref, default_inputs, weights_sha256, weights_path=weights)


def _load_factory(ref: SourceRef) -> tuple[torch.nn.Module, list[TensorSpec]]:
    import torch

    if ref.builder == "hf" and ref.path is not None:
        from dlopt.hf_source import load_hf_model

        module, specs, _ = load_hf_model(ref.path, ref.attribute, ref.text)
        return module, specs
    if ref.builder == "torchvision":
        from dlopt.torchvision_source import load_torchvision_model

        return load_torchvision_model(ref.attribute or "", ref.text)

    python_module = _import_python_module(ref)
    factory = getattr(python_module, ref.attribute or "", None)
    if factory is None:
        callables = sorted(
            name
            for name, value in vars(python_module).items()
            if callable(value) and not name.startswith("_") and not inspect.isclass(value)
        )
        raise SourceError(
            f"{ref.text}: no {ref.attribute!r} in {python_module.__name__}",
            f"callables there: {', '.join(callables[:8]) or 'none'}",
        )
    if isinstance(factory, torch.nn.Module):
        module = factory
    elif callable(factory):
        try:
            module = factory()
        except Exception as error:
            raise SourceError(
                f"calling {ref.text}() failed: {type(error).__name__}: {error}",
                "the factory must take no arguments and return an nn.Module",
            ) from error
    else:
        raise SourceError(f"{ref.text} is a {type(factory).__name__}, not a factory")
    if not isinstance(module, torch.nn.Module):
        raise SourceError(
            f"{ref.text}() returned a {type(module).__name__}, not a torch.nn.Module",
            "make the factory return the model",
        )
    default_texts = checked_default_inputs(
        getattr(python_module, "DLOPT_INPUTS", None), str(ref.path or ref.module)
    )
    default_inputs = parse_input_specs(default_texts) if default_texts else []
    return module, default_inputs


def checked_default_inputs(value: Any, where: str) -> list[str]:
    """A model file's DLOPT_INPUTS, checked: a list (or tuple) of input spec strings."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise InputSpecError(
            f"DLOPT_INPUTS in {where} is {value!r}, not a list of input specs",
            'write it as a list of strings, e.g. DLOPT_INPUTS = ["image:batch=1x3x224x224"]',
        )
    return list(value)


def static_default_inputs(path: Path) -> list[TensorSpec] | None:
    """The specs of a model file's `DLOPT_INPUTS = [...]`, read without running the file.

    For the checks that come before any worker imports the model (the bench's data check);
    None when the file has no such literal assignment or does not parse (the import, later,
    reports that). Raises InputSpecError when the literal is not a list of valid specs.
    """
    import ast

    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "DLOPT_INPUTS" for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return None  # not a literal: only running the file tells
            return parse_input_specs(checked_default_inputs(value, str(path))) or None
    return None


def _import_python_module(ref: SourceRef) -> Any:
    try:
        if ref.path is not None:
            path = ref.path.resolve()
            name = "dlopt_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
            if name in sys.modules:
                return sys.modules[name]
            # Let the model file import its siblings, as it would when run as a script.
            if str(path.parent) not in sys.path:
                sys.path.insert(0, str(path.parent))
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise SourceError(f"cannot import {path}", "it must be a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            return module
        return importlib.import_module(ref.module or "")
    except SourceError:
        raise
    except Exception as error:
        where = ref.path or ref.module
        raise SourceError(
            f"importing {where} failed: {type(error).__name__}: {error}",
            "fix the error in that file, or install what it imports",
        ) from error


def _load_torchscript(ref: SourceRef) -> torch.nn.Module:
    import torch

    try:
        return torch.jit.load(str(ref.path), map_location="cpu")
    except Exception as error:
        raise SourceError(
            f"cannot load TorchScript {ref.path}: {type(error).__name__}: {str(error)[:200]}",
            "the file may be corrupt or from a newer torch; re-save it with torch.jit.save",
        ) from error


def _load_exported_program(ref: SourceRef, allow_pickle: bool) -> torch.nn.Module:
    from dlopt.trust.pickle_safety import UnsafeModelError, load_exported_program

    assert ref.path is not None
    try:
        return load_exported_program(ref.path, allow_pickle).module()
    except UnsafeModelError:
        raise
    except Exception as error:
        raise SourceError(
            f"cannot load ExportedProgram {ref.path}: {type(error).__name__}: {str(error)[:200]}",
            "re-save it with torch.export.save",
        ) from error


def load_weights(module: torch.nn.Module, path: Path, allow_pickle: bool = False) -> str:
    """Load a state_dict into `module` (strict); return the weights file's sha256.

    Files load with `weights_only=True`: a pickle that carries code is refused unless
    `allow_pickle` is set, because unpickling it runs that code.
    """
    from dlopt.artifacts import sha256_file

    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        raise WeightsError(f"weights file {path} is {what}", "check the --weights path")
    state_dict = _read_state_dict(path, allow_pickle)
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise WeightsError(
            f"weights {path} do not fit the model: {_summarize_load_error(str(error))}",
            "check that the factory builds the same architecture the weights were saved from",
        ) from error
    return sha256_file(path)


def _read_state_dict(path: Path, allow_pickle: bool) -> dict[str, Any]:
    import torch

    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as error:
            raise WeightsError(
                f"{path} is a safetensors file but safetensors is not installed",
                "pip install safetensors",
            ) from error
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as error:
            raise WeightsError(f"cannot read safetensors {path}: {error}") from error
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=not allow_pickle)
    except Exception as error:
        text = str(error)
        if "weights_only" in text or "Unsupported global" in text:
            raise WeightsError(
                f"refused to load {path}: it is a pickle that holds objects other than tensors, "
                "and unpickling it could run code",
                "re-save it as a state_dict of tensors (or safetensors); if you trust the file, "
                "pass --trust-pickle",
            ) from error
        raise WeightsError(
            f"cannot read weights {path}: {type(error).__name__}: {text.splitlines()[0][:200]}",
            "the file may be truncated or not a torch.save file",
        ) from error
    if isinstance(loaded, dict):
        # Training checkpoints often nest the weights.
        for key in ("state_dict", "model_state_dict", "model"):
            if key in loaded and isinstance(loaded[key], dict):
                return dict(loaded[key])
        return dict(loaded)
    if isinstance(loaded, torch.nn.Module):
        return dict(loaded.state_dict())
    raise WeightsError(f"{path} holds a {type(loaded).__name__}, not a state_dict")


def _summarize_load_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines()[1:] if line.strip()]
    summary = "; ".join(lines[:3]) or text
    return summary[:400] + (" ..." if len(summary) > 400 else "")


def onnx_input_specs(path: Path) -> list[TensorSpec]:
    """Input specs read from an ONNX graph (for files without a dlopt manifest); dynamic axes
    are named as `dlopt.specs.spec_from_graph` names them."""
    import onnx

    from dlopt.specs import spec_from_graph

    dtypes = {
        onnx.TensorProto.FLOAT: "float32",
        onnx.TensorProto.FLOAT16: "float16",
        onnx.TensorProto.INT64: "int64",
        onnx.TensorProto.INT32: "int32",
        onnx.TensorProto.BOOL: "bool",
    }
    model = onnx.load(str(path), load_external_data=False)
    initializers = {initializer.name for initializer in model.graph.initializer}
    specs = []
    for graph_input in model.graph.input:
        if graph_input.name in initializers:
            continue
        tensor_type = graph_input.type.tensor_type
        dims = [dim.dim_value or dim.dim_param for dim in tensor_type.shape.dim]
        dtype = dtypes.get(tensor_type.elem_type)
        if dtype is None:
            raise SourceError(
                f"{path}: input {graph_input.name!r} has an element type dlopt does not feed "
                f"({onnx.TensorProto.DataType.Name(tensor_type.elem_type)})",
                "dlopt feeds float32, float16, int64, int32 and bool inputs",
            )
        spec = spec_from_graph(graph_input.name, dims, dtype)
        if dtype in ("int64", "int32"):
            spec = replace(spec, value_range=_index_range(model.graph, graph_input.name))
        specs.append(spec)
    return specs


def source_record(loaded: LoadedModel) -> dict[str, Any]:
    """The manifest's `source` block: the model reference (absolute here, made portable when
    written), its kind, and the sha256 of the model file and of the weights."""
    from dlopt.artifacts import sha256_file

    ref = loaded.ref
    reference = ref.text
    record: dict[str, Any] = {"reference": reference, "kind": ref.kind}
    if ref.path is not None and ref.builder == "hf":
        # Kept as an hf: source (the tokenizer of `text:` data is found through it).
        task = f"#{ref.attribute}" if ref.attribute else ""
        record["reference"] = f"{HF_PREFIX}{ref.path.resolve()}{task}"
    elif ref.path is not None:
        absolute = str(ref.path.resolve())
        reference = f"{absolute}:{ref.attribute}" if ref.attribute else absolute
        record["reference"] = reference
        record["file_sha256"] = sha256_file(ref.path) if ref.path.is_file() else None
    record["weights_sha256"] = loaded.weights_sha256
    if loaded.weights_path is not None:
        record["weights"] = str(loaded.weights_path.resolve())
    return record


def _index_range(graph: Any, name: str) -> tuple[float, float] | None:
    """The values an integer input may take, read from the graph: the rows of the table a
    Gather looks it up in (token ids: 0..vocab_size-1), 0..1 for a mask; None (the default
    0..9) when the graph does not tell. Synthetic data outside an embedding's rows would stop
    the runtime with an out-of-bounds index."""
    tables = {
        initializer.name: initializer.dims[0]
        for initializer in graph.initializer
        if len(initializer.dims) >= 1
    }
    # The ids may be reshaped on the way (GPT-2 views them as (-1, seq) first).
    same_values = {"Reshape", "Cast", "Unsqueeze", "Squeeze", "Flatten", "Identity"}
    aliases, pending = {name}, [name]
    while pending:
        current = pending.pop()
        for node in graph.node:
            if node.op_type in same_values and node.input and node.input[0] == current:
                fresh = [output for output in node.output if output not in aliases]
                aliases.update(fresh)
                pending.extend(fresh)
    rows = [
        tables[node.input[0]]
        for node in graph.node
        if node.op_type == "Gather"
        and len(node.input) > 1
        and node.input[1] in aliases
        and node.input[0] in tables
    ]
    if rows:
        return (0.0, float(min(rows) - 1))
    if "mask" in name.lower():
        return (0.0, 1.0)
    return None
