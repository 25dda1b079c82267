"""The demo gate's output is safe to ship: no file names the build machine, every artifact
verifies, the signed attestation lets a deploy job accept exactly what passed; with a model key
the artifacts are encrypted at rest and benched from memory."""

from __future__ import annotations

import base64
import getpass
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.integration.conftest import SAMPLES

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = SAMPLES / "digits_cnn" / "dlopt.toml"


def run_dlopt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlopt", *args],
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo gate run as a user would, signed: (its output folder, the release key)."""
    work = tmp_path_factory.mktemp("demo")
    assert run_dlopt("keygen", "-o", "keys/release.key", cwd=work).returncode == 0
    result = run_dlopt(
        "gate", str(DEMO_CONFIG), "-o", "out", "--sign-key", "keys/release.key", cwd=work
    )
    # Speed gates may pass, fail or be too noisy to judge on a busy machine; all three ship.
    assert result.returncode in (0, 1, 3), result.stdout + result.stderr
    return work / "out", work / "keys" / "release.key"


def machine_needles(output: Path) -> dict[str, re.Pattern[bytes]]:
    """The checkout, the home folder, the user name (as a word) and the output's own path."""
    needles = {
        "checkout": str(ROOT),
        "home": str(Path.home()),
        "output folder": str(output.resolve()),
    }
    patterns = {name: re.compile(re.escape(text.encode())) for name, text in needles.items()}
    patterns["user name"] = re.compile(
        rb"(?<![A-Za-z0-9])" + re.escape(getpass.getuser().encode()) + rb"(?![A-Za-z0-9])"
    )
    return patterns


def scan(folder: Path, patterns: dict[str, re.Pattern[bytes]]) -> list[str]:
    """`file (member): what, context` for each match in any file or zip member."""
    hits = []
    for file in sorted(folder.rglob("*")):
        if not file.is_file():
            continue
        blobs = {"": file.read_bytes()}
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                blobs.update({name: archive.read(name) for name in archive.namelist()})
        for member, data in blobs.items():
            for name, pattern in patterns.items():
                match = pattern.search(data)
                if match:
                    context = data[max(0, match.start() - 40) : match.end() + 20]
                    hits.append(f"{file.relative_to(folder)} {member}: {name}, {context!r}")
    return hits


def test_no_file_the_demo_gate_writes_names_the_build_machine(demo: tuple[Path, Path]) -> None:
    out, _ = demo
    written = [file for file in out.rglob("*") if file.is_file()]

    assert {"report.json", "summary.md", "junit.xml", "report.html", "attestation.json"} <= {
        file.name for file in written
    }
    assert any(file.name == "model.ts" for file in written)  # TorchScript (pruned) is scanned
    assert scan(out, machine_needles(out)) == []


def test_stripped_sizes_are_recorded(demo: tuple[Path, Path]) -> None:
    out, _ = demo
    record = json.loads((out / "artifacts/fp32/model.onnx.dlopt.json").read_text())[
        "debug_metadata"
    ]

    assert record["kept"] is False and record["entries_removed"] > 50
    assert record["size_bytes_after"] < record["size_bytes_before"]


def test_the_whole_output_verifies(demo: tuple[Path, Path]) -> None:
    out, _ = demo

    result = run_dlopt("verify", str(out), cwd=out.parent)

    assert result.returncode == 0, result.stderr
    assert "ok    " in result.stdout


def test_a_deploy_job_accepts_a_passing_artifact_by_signature(demo: tuple[Path, Path]) -> None:
    out, key = demo
    statement = json.loads(
        base64.b64decode(json.loads((out / "attestation.json").read_text())["payload"])
    )
    passed = {subject["name"] for subject in statement["subject"]}
    assert "artifacts/fp32/model.onnx" in passed
    assert (
        statement["predicate"]["config"]["sha256"]
        and statement["predicate"]["data"]["evaluation"]["sha256"]
    )

    result = run_dlopt(
        "verify", "--attestation", str(out / "attestation.json"), "--public-key", f"{key}.pub",
        str(out / "artifacts/fp32/model.onnx"), cwd=out.parent,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("forgery", ["payload edited", "other key", "not a passing artifact"])
def test_a_deploy_job_refuses_forgeries(
    demo: tuple[Path, Path], tmp_path: Path, forgery: str
) -> None:
    out, key = demo
    attestation = tmp_path / "attestation.json"
    envelope = json.loads((out / "attestation.json").read_text())
    public_key = f"{key}.pub"
    artifact = out / "artifacts/fp32/model.onnx"
    if forgery == "payload edited":  # claim another file passed
        statement = json.loads(base64.b64decode(envelope["payload"]))
        statement["subject"].append(
            {"name": "evil.onnx", "digest": {"sha256": _sha256(out / "report.json")}}
        )
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        artifact = out / "report.json"
    elif forgery == "other key":
        assert run_dlopt("keygen", "-o", str(tmp_path / "other.key"), cwd=tmp_path).returncode == 0
        public_key = str(tmp_path / "other.key.pub")
    else:
        artifact = out / "artifacts/pruned-50/model.ts"  # made, but never gated
    attestation.write_text(json.dumps(envelope))

    result = run_dlopt(
        "verify", "--attestation", str(attestation), "--public-key", public_key, str(artifact),
        cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: " in result.stderr and "Traceback" not in result.stderr


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_gate_with_a_model_key_ships_only_encrypted_artifacts(tmp_path: Path) -> None:
    cnn = SAMPLES / "digits_cnn"
    config = tmp_path / "dlopt.toml"
    config.write_text(
        f'[model]\nsource = "{cnn / "model.py"}:create_model"\nweights = "{cnn / "weights.pt"}"\n'
        f'[data]\nevaluation = "{cnn / "data.py"}:evaluation"\nevaluation_limit = 64\n'
        '[bench]\nbackends = ["onnxruntime", "openvino"]\nmin_time_s = 0.3\n'
        "[gate]\nmodel_size_mb_max = 10\n"
    )
    assert run_dlopt("keygen", "--model-key", "-o", "model.key", cwd=tmp_path).returncode == 0

    result = run_dlopt("gate", str(config), "-o", "out", "--key-file", "model.key", cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "artifacts/fp32").iterdir()) == [
        "model.onnx.dlopt.json", "model.onnx.enc", "model.onnx.enc.dlopt.json",
    ]  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert {(r["backend"], r["status"]) for r in report["rows"]} == {
        ("onnxruntime", "ok"),
        ("openvino", "ok"),
    }
    envelope = json.loads((out / "attestation.json").read_text())
    assert [s["name"] for s in envelope["subject"]] == ["artifacts/fp32/model.onnx.enc"]
    verified = run_dlopt("verify", "out", "--key-file", "model.key", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert (tmp_path / "model.key").read_text().strip() not in (out / "report.json").read_text()
