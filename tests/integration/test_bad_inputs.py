"""Bad input across commands: exit 2 (or 1), exactly one line on stderr naming the problem, no
traceback, and nothing written to the output folder.

Each case builds its broken input in a fresh folder, runs the real CLI in-process (the real
loaders, runtimes and parsers underneath), and checks the contract.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dlopt.cli import app
from tests.integration.conftest import SAMPLES

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_models.py"
CNN = SAMPLES / "digits_cnn"
CNN_SOURCE = f"{CNN / 'model.py'}:create_model"


@dataclass(frozen=True)
class Case:
    name: str
    make_args: Callable[[Path], list[str]]  # builds the broken input under tmp, returns argv
    fragment: str
    exit_code: int = 2


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _onnx_bytes(tmp: Path) -> bytes:
    from dlopt.optimize.export import ExportOptions, export_model

    export_model(f"{TINY}:dict_output_net", tmp / "ref", options=ExportOptions(formats=("onnx",)))
    return (tmp / "ref" / "model.onnx").read_bytes()


def _torchscript(tmp: Path, name: str) -> Path:
    path = tmp / name
    torch.jit.save(torch.jit.trace(torch.nn.Linear(4, 3), torch.ones(1, 4)), str(path))
    return path


def _tiny_onnx(tmp: Path) -> str:
    return str(_write(tmp / "tiny.onnx", _onnx_bytes(tmp)))


def _npz(tmp: Path, **arrays: np.ndarray) -> str:
    path = tmp / "data.npz"
    np.savez(path, **arrays)
    return str(path)


def _config(tmp: Path, text: str) -> str:
    path = tmp / "dlopt.toml"
    path.write_text(f'[model]\nsource = "{CNN_SOURCE}"\nweights = "{CNN / "weights.pt"}"\n' + text)
    return str(path)


class _Payload:
    """Pickled by reference: weights_only=True must refuse to build it."""


def _pickle_with_code(tmp: Path) -> str:
    path = tmp / "evil.pt"
    torch.save({"fc.weight": torch.zeros(3, 4), "payload": _Payload()}, path)
    return str(path)


def _traversal_onnx(tmp: Path) -> str:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), name="w")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../../etc/passwd"
    weight.ClearField("raw_data")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[weight],
    )
    path = tmp / "evil.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return str(path)


x4 = np.ones((8, 4), dtype=np.float32)
BASELINE_WITHOUT_BENCH = (
    b'{"verdict": "pass", "exit_code": 0, "gates": [], '
    b'"rows": [{"variant": "fp32", "backend": "onnxruntime", "status": "ok"}]}'
)
CASES = [
    # export: model files
    Case("missing model file", lambda t: ["export", str(t / "none.pt")], "is not a file"),
    Case("folder as model", lambda t: ["export", str(t)], "is a folder"),
    Case("empty model file", lambda t: ["export", str(_write(t / "m.pt", b""))], "is empty"),
    Case(
        "truncated TorchScript",
        lambda t: ["export", str(_write(t / "m.pt", b"PK\x03\x04xx"))],
        "damaged zip",
    ),
    Case(
        "corrupt .pt",
        lambda t: ["export", str(_write(t / "m.pt", b"\x80\x02garbage"))],
        "not a TorchScript",
    ),
    Case(
        "ONNX named .pt given to export",
        lambda t: ["export", str(_write(t / "m.pt", _onnx_bytes(t)))],
        "is an onnx file",
    ),
    Case(
        "TorchScript named .onnx given to bench",
        lambda t: [
            "bench",
            str(_torchscript(t, "m.onnx")),
            "-b",
            "onnxruntime",
            "-o",
            str(t / "o"),
        ],
        "is a TorchScript file",
    ),
    Case(
        "state_dict given as a model",
        lambda t: [
            "export",
            str(_torchscript(t, "m.ts").parent / "m.ts") if False else _state_dict(t),
        ],
        "holds weights",
    ),
    Case("zip that is not torch", lambda t: ["export", _plain_zip(t)], "not a torch model"),
    # export: factories, specs, weights
    Case("bad factory name", lambda t: ["export", f"{TINY}:nope"], "no 'nope'"),
    Case(
        "factory returns an int",
        lambda t: ["export", f"{TINY}:not_a_module"],
        "not a torch.nn.Module",
    ),
    Case(
        "factory raises", lambda t: ["export", f"{TINY}:raising_factory"], "cannot build this one"
    ),
    Case(
        "unparsable input spec",
        lambda t: ["export", f"{TINY}:dict_output_net", "-i", "x:1xq"],
        "cannot read dimension",
    ),
    Case(
        "inputs that do not fit",
        lambda t: ["export", f"{TINY}:dict_output_net", "-i", "x:batch=2x7"],
        "fails on inputs",
    ),
    Case(
        "wrong input dtype",
        lambda t: ["export", CNN_SOURCE, "-i", "image:batch=1x1x32x32:int64"],
        "fails on inputs",
    ),
    Case(
        "missing weights",
        lambda t: ["export", f"{TINY}:dict_output_net", "-w", str(t / "w.pt")],
        "is missing",
    ),
    Case(
        "weights of another model",
        lambda t: ["export", CNN_SOURCE, "-w", _state_dict(t)],
        "do not fit the model",
    ),
    Case(
        "pickle that carries code",
        lambda t: ["export", f"{TINY}:dict_output_net", "-w", _pickle_with_code(t)],
        "could run code",
    ),
    Case(
        "output folder is a file",
        lambda t: ["export", f"{TINY}:dict_output_net", "-o", str(_write(t / "file", b"x"))],
        "is not a folder",
    ),
    # bench: backends and data
    Case(
        "unknown backend",
        lambda t: ["bench", _tiny_onnx(t), "-b", "tpu", "-o", str(t / "o")],
        "unknown backend 'tpu'",
    ),
    Case(
        "NaN in data",
        lambda t: ["bench", _tiny_onnx(t), "--data", _npz(t, x=x4 * np.nan), "-o", str(t / "o")],
        "NaN",
    ),
    Case(
        "empty dataset",
        lambda t: ["bench", _tiny_onnx(t), "--data", _npz(t, x=x4[:0]), "-o", str(t / "o")],
        "yielded no samples",
    ),
    Case(
        "labels of the wrong length",
        lambda t: [
            "bench",
            _tiny_onnx(t),
            "--data",
            _npz(t, x=x4, labels=np.zeros(5, dtype=np.int64)),
            "-o",
            str(t / "o"),
        ],
        "labels",
    ),
    Case(
        "data names do not match",
        lambda t: ["bench", _tiny_onnx(t), "--data", _npz(t, image=x4), "-o", str(t / "o")],
        "'x'",
    ),
    Case(
        "data file missing",
        lambda t: ["bench", _tiny_onnx(t), "--data", str(t / "none.npz"), "-o", str(t / "o")],
        "none.npz",
    ),
    Case(
        "ONNX external data escaping its folder",
        lambda t: ["bench", _traversal_onnx(t), "-o", str(t / "o")],
        "path-traversal",
    ),
    # gate: configs
    Case(
        "config missing", lambda t: ["gate", str(t / "none.toml"), "-o", str(t / "o")], "is missing"
    ),
    Case(
        "config with an unknown key",
        lambda t: ["gate", _config(t, "[gate]\nspeed = 2\n"), "-o", str(t / "o")],
        "unknown key gate.speed",
    ),
    Case(
        "config value of the wrong type",
        lambda t: ["gate", _config(t, '[bench]\nbatch_size = "1"\n'), "-o", str(t / "o")],
        "bench.batch_size = '1' has the wrong type",
    ),
    Case(
        "threshold out of range",
        lambda t: ["gate", _config(t, "[gate]\ntop1_agreement_min = 2\n"), "-o", str(t / "o")],
        "out of range",
    ),
    Case(
        "--only names no variant",
        lambda t: ["gate", _config(t, ""), "--only", "int9", "-o", str(t / "o")],
        "unknown variant 'int9'",
    ),
    Case(
        "recipe with an unknown key",
        lambda t: [
            "gate",
            _config(t, '[[variants]]\nname = "p"\nprune = { amount = 0.5, colour = "red" }\n'),
            "-o",
            str(t / "o"),
        ],
        "bad key or value",
    ),
    Case(
        "recipe value out of range",
        lambda t: [
            "gate",
            _config(t, '[[variants]]\nname = "p"\nprune = { amount = 1.5 }\n'),
            "-o",
            str(t / "o"),
        ],
        "amount",
    ),
    # the error contract for mistakes that used to end in a traceback (exit 4)
    Case(
        "prune a TorchScript file",
        lambda t: ["prune", str(_torchscript(t, "m.ts")), "-o", str(t / "o")],
        "prune works on the model's Python code",
    ),
    Case(
        "DLOPT_INPUTS is a list of numbers",
        lambda t: ["export", _model_file(t, "DLOPT_INPUTS = [4]"), "-o", str(t / "o")],
        "DLOPT_INPUTS in",
    ),
    Case(
        "DLOPT_INPUTS is a string (bench reads it before any worker)",
        lambda t: [
            "bench",
            _model_file(t, 'DLOPT_INPUTS = "x:batch=1x4"'),
            "-b",
            "torch",
            "-o",
            str(t / "o"),
        ],
        "not a list of input specs",
    ),
    Case(
        "report.json with missing keys",
        lambda t: ["report", str(_write(t / "r.json", b'{"verdict": "pass", "gates": [{}]}'))],
        "not a complete dlopt gate report",
    ),
    Case(
        "output folder under /proc",
        lambda t: ["export", f"{TINY}:dict_output_net", "-o", "/proc/self/fd"],
        "cannot write /proc/self/fd",
    ),
    Case(
        "--json is a folder",
        lambda t: ["bench", _tiny_onnx(t), "--json", str(t), "-o", str(t / "o")],
        "is a folder",
    ),
    Case(
        "build --shapes with a giant dim",
        lambda t: ["build", _tiny_onnx(t), "--shapes", "x:99999999999x4", "-o", str(t / "o")],
        "elements",
    ),
    Case(
        "NaN labels",
        lambda t: [
            "bench",
            _tiny_onnx(t),
            "--data",
            _npz(t, x=x4, labels=np.full(8, np.nan)),
            "-o",
            str(t / "o"),
        ],
        "labels contain NaN or Inf",
    ),
    Case(
        "NaN labels to fine-tune on",
        lambda t: [
            "prune",
            CNN_SOURCE,
            "-w",
            str(CNN / "weights.pt"),
            "--finetune",
            _npz(t, image=np.ones((4, 1, 32, 32), np.float32), labels=np.full(4, np.nan)),
            "-o",
            str(t / "o"),
        ],
        "labels contain NaN or Inf",
    ),
    Case(
        "object (pickled) labels",
        lambda t: [
            "bench",
            _tiny_onnx(t),
            "--data",
            _npz(t, x=x4, labels=np.array([{"a": 1}] * 8, dtype=object)),
            "-o",
            str(t / "o"),
        ],
        "object array (a pickle)",
    ),
    Case(
        "a malformed --baseline, before anything runs",
        lambda t: [
            "gate",
            _config(t, ""),
            "--baseline",
            str(_write(t / "base.json", BASELINE_WITHOUT_BENCH)),
            "-o",
            str(t / "o"),
        ],
        "rows[0].bench is missing",
    ),
    # an output that would overwrite an input, in every command
    Case(
        "export into the model's folder",
        lambda t: ["export", _model_file(t, 'DLOPT_INPUTS = ["x:batch=2x4"]'), "-o", str(t)],
        "holds the input",
    ),
    Case(
        "quantize into the FP32 model's folder",
        lambda t: ["quantize", _tiny_onnx(t), "--mode", "dynamic", "-o", str(t)],
        "holds the input",
    ),
    Case(
        "prune into the model's folder",
        lambda t: ["prune", _model_file(t, 'DLOPT_INPUTS = ["x:batch=2x4"]'), "-o", str(t)],
        "holds the input",
    ),
    Case(
        "build into the ONNX file's folder",
        lambda t: ["build", _tiny_onnx(t), "-o", str(t)],
        "holds the input",
    ),
    Case(
        "bench --json over the model",
        lambda t: ["bench", (m := _tiny_onnx(t)), "--json", m, "-o", str(t / "o")],
        "is the input",
    ),
    Case(
        "bench --md over the data",
        lambda t: [
            "bench",
            _tiny_onnx(t),
            "--data",
            (d := _npz(t, x=x4)),
            "--md",
            d,
            "-o",
            str(t / "o"),
        ],
        "is the input",
    ),
    Case(
        "gate into the config's folder",
        lambda t: ["gate", _config(t, ""), "-o", str(t)],
        "holds the input",
    ),
    Case(
        "report --html over the report.json",
        lambda t: ["report", (r := str(_write(t / "r.json", b"{}"))), "--html", r],
        "is the input",
    ),
    # report and prune
    Case("report.json missing", lambda t: ["report", str(t / "report.json")], "does not exist"),
    Case(
        "report.json that is not a report",
        lambda t: ["report", str(_write(t / "r.json", b"{}"))],
        "not a dlopt gate report",
    ),
    Case(
        "prune amount out of range",
        lambda t: [
            "prune",
            CNN_SOURCE,
            "-w",
            str(CNN / "weights.pt"),
            "--amount",
            "1.2",
            "-o",
            str(t / "o"),
        ],
        "amount",
    ),
    Case(
        "prune an unknown layer",
        lambda t: [
            "prune",
            CNN_SOURCE,
            "-w",
            str(CNN / "weights.pt"),
            "--ignore",
            "layer9",
            "-o",
            str(t / "o"),
        ],
        "layer9",
    ),
]


def _model_file(tmp: Path, inputs_line: str) -> str:
    (tmp / "net.py").write_text(
        f"import torch\n{inputs_line}\n\ndef make():\n    return torch.nn.Linear(4, 2)\n"
    )
    return f"{tmp / 'net.py'}:make"


def _state_dict(tmp: Path) -> str:
    path = tmp / "weights.pt"
    torch.save(torch.nn.Linear(4, 3).state_dict(), path)
    return str(path)


def _plain_zip(tmp: Path) -> str:
    path = tmp / "m.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return str(path)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gives_one_line_and_writes_nothing(case: Case, tmp_path: Path) -> None:
    workdir = tmp_path / "in"
    workdir.mkdir()
    args = case.make_args(workdir)
    before = sorted(os.listdir(workdir))
    out = Path(args[args.index("-o") + 1]) if "-o" in args else None

    result = CliRunner().invoke(app, args)

    assert result.exit_code == case.exit_code, result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and case.fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    if out is not None and out.is_dir() and out != workdir:  # workdir: checked below
        leftovers = [
            p for p in out.rglob("*") if p.is_file() and p.suffix in (".onnx", ".ts", ".xml")
        ]
        assert leftovers == []
    assert sorted(os.listdir(workdir)) == before  # inputs untouched, nothing written beside them


def test_matrix_has_at_least_30_cases() -> None:
    assert len(CASES) >= 30


# A disk that fills up half way through a write: the one-line contract holds, and the output
# folder keeps what it had (an earlier artifact byte-identical, nothing half-written beside it).
@dataclass(frozen=True)
class WriteFault:
    name: str
    command: str  # export | build
    fails: Callable[[Path], bool]  # which file's write runs out of space


WRITE_FAULTS = [
    WriteFault("export: the ONNX model", "export", lambda path: path.name == "model.onnx"),
    WriteFault("export: its manifest", "export", lambda path: ".dlopt.json" in path.name),
    WriteFault("build: the OpenVINO IR", "build", lambda path: path.name == "model.bin"),
]


class _HalfThenFull:
    """A file whose first write stores half the bytes, then fails as a full disk does."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: Any) -> int:
        self._stream.write(data[: len(data) // 2])
        self._stream.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __enter__(self) -> _HalfThenFull:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stream.close()


def _inject_disk_full(
    monkeypatch: pytest.MonkeyPatch, out: Path, fails: Callable[[Path], bool]
) -> list[Path]:
    """Python writes under `out` (and OpenVINO's C++ .bin writer, pointed at /dev/full) fail."""
    import openvino as ov

    hit: list[Path] = []
    real_open, real_save_model = builtins.open, ov.save_model

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        stream = real_open(file, mode, *args, **kwargs)
        path = Path(os.fsdecode(file)) if isinstance(file, (str, bytes, os.PathLike)) else None
        if path is not None and set(mode) & set("wax") and out in path.parents and fails(path):
            hit.append(path)
            return _HalfThenFull(stream)
        return stream

    def save_model(model: Any, xml_path: str, *args: Any, **kwargs: Any) -> None:
        bin_path = Path(xml_path).with_suffix(".bin")
        if fails(bin_path):
            hit.append(bin_path)
            os.symlink("/dev/full", bin_path)  # a real ENOSPC from OpenVINO's own writer
        real_save_model(model, xml_path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)  # pathlib's write_text opens through io.open
    monkeypatch.setattr(ov, "save_model", save_model)
    return hit


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("fault", WRITE_FAULTS, ids=[fault.name for fault in WRITE_FAULTS])
def test_disk_full_half_way_leaves_the_earlier_artifact(
    fault: WriteFault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    tiny = f"{TINY}:dict_output_net"
    runner = CliRunner()
    # The earlier artifact differs from the one the failing run would write.
    if fault.command == "export":
        earlier = ["export", tiny, "-f", "onnx", "--exporter", "legacy", "-o", str(out)]
        args = ["export", tiny, "-f", "onnx", "-o", str(out)]
    else:
        onnx_path = _tiny_onnx(tmp_path)
        earlier = ["build", onnx_path, "-b", "openvino", "-p", "fp16", "-o", str(out)]
        args = ["build", onnx_path, "-b", "openvino", "-p", "fp32", "-o", str(out)]
    assert runner.invoke(app, earlier).exit_code == 0
    before = _snapshot(out)
    hit = _inject_disk_full(monkeypatch, out, fault.fails)

    result = runner.invoke(app, args)

    monkeypatch.undo()
    assert hit, "the fault was never injected"
    assert result.exit_code == 2, result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot ") and str(out) in lines[0], lines[0]
    assert "disk space" in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert _snapshot(out) == before  # same files, same bytes: no staging or temporary leftovers
