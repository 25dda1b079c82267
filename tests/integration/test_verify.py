"""`dlopt verify`: a tamper matrix over a real output tree (export -> dynamic INT8 ONNX and an
OpenVINO IR), each case caught with exit 1 naming the file; an untouched tree exits 0."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dlopt.trust.provenance import seal

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = FIXTURES / "tiny_models.py"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """out/fp32 (model.onnx, model.ts), out/int8 (from fp32), out/ir (model.xml + .bin), and
    impostor/ (another model's export, for the swapped-parent case)."""
    from dlopt.optimize.build import BuildOptions, build_engine
    from dlopt.optimize.export import export_model
    from dlopt.optimize.quantize import QuantizeOptions, quantize_model

    root = tmp_path_factory.mktemp("verify")
    out = root / "out"
    export_model(f"{TINY}:dict_output_net", out / "fp32")
    fp32 = str(out / "fp32" / "model.onnx")
    quantize_model(fp32, out / "int8", QuantizeOptions(mode="dynamic"))
    build_engine(fp32, out / "ir", BuildOptions(backend="openvino"))
    export_model(f"{TINY}:dict_output_net", root / "impostor", weights=_other_weights(root))
    return root


def _other_weights(root: Path) -> Path:
    """The same architecture with other weights: a valid model, but not the parent."""
    import torch

    from dlopt.sources import load_torch_model

    module = load_torch_model(f"{TINY}:dict_output_net").module
    with torch.no_grad():
        module.fc.bias.add_(1.0)
    torch.save(module.state_dict(), root / "other.pt")
    return root / "other.pt"


def run_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlopt", "verify", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def edit_manifest(path: Path, change: Callable[[dict[str, object]], None], reseal: bool) -> None:
    manifest = json.loads(path.read_text())
    change(manifest)
    if reseal:  # an attacker who knows the format re-seals it
        manifest["manifest_sha256"] = seal(manifest)
    path.write_text(json.dumps(manifest, indent=2))


def swap_parent(out: Path) -> None:
    impostor = out.parent / "impostor"
    for name in ("model.onnx", "model.onnx.dlopt.json"):
        shutil.copy(impostor / name, out / "fp32" / name)


def rename_int8(out: Path) -> None:
    folder = out / "int8"
    (folder / "model.onnx").rename(folder / "model-v2.onnx")
    (folder / "model.onnx.dlopt.json").rename(folder / "model-v2.onnx.dlopt.json")


# (case, tamper(out), what to verify (relative to out), fragment of the one-line error)
CASES: list[tuple[str, Callable[[Path], None], str, str]] = [
    ("flipped byte in model.onnx", lambda o: flip_byte(o / "fp32/model.onnx"), ".",
     "fp32/model.onnx does not match its manifest"),
    ("truncated file", lambda o: (o / "int8/model.onnx").write_bytes(
        (o / "int8/model.onnx").read_bytes()[:1000]), "int8/model.onnx",
     "int8/model.onnx does not match its manifest"),
    ("swapped parent", swap_parent, "int8/model.onnx", "is not the file it was made from"),
    ("manifest edited by hand", lambda o: edit_manifest(
        o / "int8/model.onnx.dlopt.json", lambda m: m.update(precision="fp32"), reseal=False),
     ".", "int8/model.onnx.dlopt.json was edited after it was written"),
    ("missing file", lambda o: (o / "ir/model.bin").unlink(), ".", "ir/model.bin is missing"),
    ("extra file", lambda o: shutil.copy(o / "int8/model.onnx", o / "int8/extra.onnx"), ".",
     "int8/extra.onnx is not accounted for by any manifest"),
    ("renamed file", rename_int8, ".", "describes 'model.onnx', not model-v2.onnx"),
    ("parent hash mismatch, manifest re-sealed", lambda o: edit_manifest(
        o / "int8/model.onnx.dlopt.json",
        lambda m: m["parent"].update(sha256="0" * 64), reseal=True),  # type: ignore[union-attr]
     "int8/model.onnx", "is not the file it was made from"),
    ("IR .bin flipped", lambda o: flip_byte(o / "ir/model.bin"), "ir/model.xml",
     "ir/model.bin does not match the sha256 its manifest lists"),
    ("manifest deleted", lambda o: (o / "fp32/model.ts.dlopt.json").unlink(), ".",
     "fp32/model.ts is not accounted for by any manifest"),
    ("parent deleted", lambda o: (o / "fp32/model.onnx").unlink(), "ir/model.xml",
     "parent"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("tamper", "target", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_tampering_is_caught_with_exit_1(
    tree: Path, tmp_path: Path, tamper: Callable[[Path], None], target: str, fragment: str
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(tree, root)
    out = root / "out"
    assert run_verify(str(out / target)).returncode == 0  # untouched: passes

    tamper(out)
    result = run_verify(str(out / target))

    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]


def test_an_untouched_tree_verifies_with_its_chain(tree: Path) -> None:
    result = run_verify(str(tree / "out"))

    assert result.returncode == 0, result.stderr
    for artifact in ("fp32/model.onnx", "fp32/model.ts", "int8/model.onnx", "ir/model.xml"):
        assert f"ok    {tree / 'out' / artifact}" in result.stdout


def test_manifests_hold_no_absolute_path_and_resolve_their_parent(tree: Path) -> None:
    manifest = json.loads((tree / "out/int8/model.onnx.dlopt.json").read_text())

    assert manifest["parent"]["path"] == "../fp32/model.onnx"
    assert manifest["command"][0] == "dlopt" or not manifest["command"][0].startswith("/")
    assert str(tree) not in json.dumps(manifest)
    assert str(Path.home()) not in json.dumps(manifest)


def test_a_missing_path_is_a_usage_error() -> None:
    result = run_verify("no/such/folder")

    assert result.returncode == 2 and "does not exist" in result.stderr
