"""Encrypted artifacts benched on real runtimes, decrypted only in memory: no plaintext byte
and no key byte lands in any file (outputs, worker jobs and logs, temp folders)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_dlopt(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlopt", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def plaintext(
    exported_sample: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The digits CNN: model.onnx and model.ts, and an FP32 IR (model.xml + model.bin)."""
    from dlopt.optimize.build import BuildOptions, build_engine

    folder = tmp_path_factory.mktemp("plaintext")
    for name in ("model.onnx", "model.onnx.dlopt.json", "model.ts", "model.ts.dlopt.json"):
        shutil.copy(exported_sample("digits_cnn") / name, folder / name)
    build_engine(str(folder / "model.onnx"), folder / "ir", BuildOptions(backend="openvino"))
    return folder


@pytest.fixture(scope="module")
def encrypted(plaintext: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(folder with only the encrypted copies and their manifests, the key file)."""
    root = tmp_path_factory.mktemp("encrypted")
    key = root / "model.key"
    assert run_dlopt("keygen", "--model-key", "-o", str(key)).returncode == 0
    folder = root / "models"
    for artifact in ("model.onnx", "model.ts", "ir/model.xml"):
        result = run_dlopt(
            "encrypt", str(plaintext / artifact), "--key-file", str(key), "-o", str(folder)
        )
        assert result.returncode == 0, result.stderr
    return folder, key


def needles(plaintext: Path, key: Path) -> dict[str, bytes]:
    """Byte windows from the middle of each plaintext model file, and the key itself."""
    from dlopt.trust.keys import load_model_key

    found: dict[str, bytes] = {}
    for name in ("model.onnx", "ir/model.bin", "model.ts"):
        data = (plaintext / name).read_bytes()
        for fraction in (0.3, 0.6, 0.9):
            start = int(len(data) * fraction)
            found[f"{name}@{fraction}"] = data[start : start + 64]
    model_key = load_model_key(key)
    assert model_key is not None
    found["key"] = model_key
    found["key line"] = key.read_text().strip().encode()
    return found


def leaked(folders: list[Path], wanted: dict[str, bytes]) -> list[str]:
    """`file: needle` for every needle found in a file (or a zip member) under `folders`."""
    hits = []
    for folder in folders:
        for file in folder.rglob("*"):
            if not file.is_file():
                continue
            blobs = [file.read_bytes()]
            if zipfile.is_zipfile(file):
                with zipfile.ZipFile(file) as archive:
                    blobs += [archive.read(name) for name in archive.namelist()]
            hits += [
                f"{file}: {name}"
                for name, needle in wanted.items()
                if any(needle in b for b in blobs)
            ]
    return hits


def test_encrypted_models_bench_in_memory_on_every_backend(
    plaintext: Path, encrypted: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, key = encrypted
    temp = tmp_path / "tmp"
    temp.mkdir()
    models = [str(folder / name) for name in ("model.onnx.enc", "model.xml.enc", "model.ts.enc")]
    report = tmp_path / "bench.json"

    result = run_dlopt(
        "bench", *models, "-b", "onnxruntime", "-b", "openvino", "-b", "torch",
        "--key-file", str(key), "--iterations", "20", "--data", "sample:digits_cnn",
        "--limit", "64", "-o", str(tmp_path / "bench"), "--json", str(report),
        env={"TMPDIR": str(temp), "TEMP": str(temp), "TMP": str(temp)},
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    rows = {
        (Path(r["model"]).name, r["backend"]): r for r in json.loads(report.read_text())["rows"]
    }
    for pair in [
        ("model.onnx.enc", "onnxruntime"),
        ("model.onnx.enc", "openvino"),
        ("model.xml.enc", "openvino"),
        ("model.ts.enc", "torch"),
    ]:
        assert rows[pair]["status"] == "ok", (pair, rows[pair]["reason"])
        assert rows[pair]["metrics"]["accuracy"]["value"] > 0.9  # the real model ran
    assert rows[("model.xml.enc", "onnxruntime")]["status"] == "skipped"
    wanted = needles(plaintext, key)
    assert len(leaked([plaintext], wanted)) >= 9  # the scan finds plaintext where it is
    assert leaked([tmp_path, folder], wanted) == []


@pytest.mark.parametrize("damage", ["wrong key", "truncated", "tampered ciphertext", "no key"])
def test_a_bad_key_or_file_exits_2_before_writing_anything(
    encrypted: tuple[Path, Path], tmp_path: Path, damage: str
) -> None:
    folder, key = encrypted
    model = tmp_path / "model.onnx.enc"
    shutil.copy(folder / "model.onnx.enc", model)
    shutil.copy(folder / "model.onnx.enc.dlopt.json", tmp_path / "model.onnx.enc.dlopt.json")
    data = model.read_bytes()
    key_args = ["--key-file", str(key)]
    if damage == "wrong key":
        other = tmp_path / "other.key"
        assert run_dlopt("keygen", "--model-key", "-o", str(other)).returncode == 0
        key_args = ["--key-file", str(other)]
    elif damage == "truncated":
        model.write_bytes(data[: len(data) // 2])
    elif damage == "tampered ciphertext":
        model.write_bytes(data[:-100] + bytes([data[-100] ^ 1]) + data[-99:])
    else:
        key_args = []

    result = run_dlopt("bench", str(model), *key_args, "-o", str(tmp_path / "bench"))

    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "model.onnx.enc" in lines[0]
    assert not (tmp_path / "bench").exists()


def test_verify_rehashes_the_plaintext_in_memory_with_the_key(
    encrypted: tuple[Path, Path], plaintext: Path
) -> None:
    folder, key = encrypted
    manifest = json.loads((folder / "model.onnx.enc.dlopt.json").read_text())

    with_key = run_dlopt("verify", str(folder / "model.onnx.enc"), "--key-file", str(key))
    without_key = run_dlopt("verify", str(folder / "model.xml.enc"))

    assert with_key.returncode == 0, with_key.stderr
    assert "plaintext was not re-hashed" not in with_key.stdout
    assert without_key.returncode == 0 and "plaintext was not re-hashed" in without_key.stdout
    assert manifest["format"] == "encrypted" and manifest["recipe"]["cipher"] == "AES-256-GCM"
    assert key.read_text().strip() not in json.dumps(manifest)
