"""`verify_path`: re-check artifacts against their manifests and walk each parent chain.

For every manifest found (a file's sidecar, or every `*.dlopt.json` under a folder):
- the manifest's own seal (a hand edit breaks it; dlopt.trust.provenance);
- the file it names: present, the same name, the same sha256; its companion files too (an
  IR's `.bin`, ONNX external data);
- the parent it records: present where the manifest says, with the sha256 recorded when the
  child was made (a swapped parent fails), then the parent's own manifest, up to the export;
- at the root, the model source and weights when they are present here (a source outside the
  output tree is recorded as `<outside>/NAME` and cannot be checked: a note, not a failure).
In a folder, a model file that no manifest accounts for (an extra or renamed file) fails too.

An encrypted copy (dlopt.trust.encryption) vouches for its plaintext parent: without the plaintext
on disk, its parent's manifest is still checked, and with the key the decrypted bytes are
hashed (in memory) against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt.artifacts import MANIFEST_SUFFIX, manifest_path, sha256_file
from dlopt.errors import ArtifactError, VerificationError
from dlopt.trust.provenance import SEAL_KEY, resolve_recorded, seal

# Files that hold a model (or part of one): each must be accounted for by a manifest.
MODEL_SUFFIXES = (".onnx", ".xml", ".bin", ".ts", ".jit", ".pt2", ".data", ".enc", ".plan")
ARTIFACT_KINDS = ("onnx", "openvino_ir", "torchscript", "tensorrt_plan", "encrypted")


@dataclass
class VerifyReport:
    """What was checked (`checked`: artifact paths), what could not be (`notes`), and the
    problems found, first one first."""

    root: Path
    checked: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def raise_for_problems(self) -> None:
        if self.problems:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            raise VerificationError(
                self.problems[0] + more, "do not ship it; re-create it from its source"
            )


def verify_path(path: Path, key: bytes | None = None, follow_parents: bool = True) -> VerifyReport:
    """Verify an artifact, a manifest, or every artifact under a folder (see the module
    docstring). Raises ArtifactError when `path` does not exist; mismatches are `problems`."""
    if not path.exists():
        raise ArtifactError(f"{path} does not exist", "give an artifact, a manifest or a folder")
    walker = _Walker(VerifyReport(path), key, follow_parents)
    if path.is_dir():
        manifests = sorted(
            file for file in path.rglob("*" + MANIFEST_SUFFIX) if not _in_scratch(file, path)
        )
        if not manifests:
            walker.report.problems.append(f"{path} holds no dlopt manifest: nothing to verify")
        walker.register_encrypted(manifests)
        for manifest in manifests:
            walker.visit(_artifact_of(manifest))
        walker.report.problems += [
            f"{file} is not accounted for by any manifest (an extra or renamed file)"
            for file in _model_files(path)
            if file.resolve() not in walker.accounted
        ]
    else:
        artifact = _artifact_of(path) if path.name.endswith(MANIFEST_SUFFIX) else path
        walker.visit(artifact)
    return walker.report


def _artifact_of(manifest_file: Path) -> Path:
    return manifest_file.with_name(manifest_file.name[: -len(MANIFEST_SUFFIX)])


def _in_scratch(file: Path, root: Path) -> bool:
    parts = file.relative_to(root).parts
    return any(part.startswith(".") or part == "jobs" for part in parts[:-1])


def _model_files(root: Path) -> Iterator[Path]:
    for file in sorted(root.rglob("*")):
        if not file.is_file() or file.suffix not in MODEL_SUFFIXES or _in_scratch(file, root):
            continue
        if file.suffix != ".xml" or _is_openvino_ir(file):  # not junit.xml
            yield file


def _is_openvino_ir(file: Path) -> bool:
    with open(file, "rb") as stream:
        return b"<net " in stream.read(1024)


class _Walker:
    def __init__(self, report: VerifyReport, key: bytes | None, follow_parents: bool) -> None:
        self.report = report
        self.key = key
        self.follow_parents = follow_parents
        self.visited: set[Path] = set()
        self.accounted: set[Path] = set()
        self.vouched: set[Path] = set()  # plaintexts an encrypted copy stands for

    def register_encrypted(self, manifests: list[Path]) -> None:
        """Plaintexts held only as encrypted copies, before any is visited (in any order);
        each encrypted copy is itself checked when visited."""
        for manifest_file in manifests:
            try:
                manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue  # reported when visited
            parent = manifest.get("parent") or {}
            if manifest.get("format") == "encrypted" and parent.get("path"):
                plaintext = resolve_recorded(str(parent["path"]), manifest_file.parent)
                if plaintext is not None:
                    self.vouched.add(plaintext.resolve())

    def visit(self, artifact: Path) -> None:
        resolved = artifact.resolve()
        if resolved in self.visited:
            return
        self.visited.add(resolved)
        self.accounted.add(resolved)
        manifest = self._manifest(artifact)
        if manifest is None:
            return
        self._check_files(artifact, manifest)
        if not self.follow_parents:
            return
        parent = manifest.get("parent")
        if isinstance(parent, dict) and parent.get("path") and _is_artifact(parent):
            self._check_parent(artifact, manifest, parent)
        else:
            self._check_source(artifact, parent if isinstance(parent, dict) else None, manifest)

    def _manifest(self, artifact: Path) -> dict[str, Any] | None:
        sidecar = manifest_path(artifact)
        self.accounted.add(sidecar.resolve())
        if not sidecar.is_file():
            self._problem(f"{artifact} has no manifest ({sidecar.name}): nothing to verify it by")
            return None
        try:
            manifest: dict[str, Any] = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            self._problem(f"{sidecar} is not a readable manifest ({type(error).__name__})")
            return None
        recorded = manifest.get(SEAL_KEY)
        if not recorded:
            self._problem(f"{sidecar} has no seal (edited, or written before manifest schema 2)")
        elif recorded != seal(manifest):
            self._problem(f"{sidecar} was edited after it was written: its seal does not match")
        return manifest

    def _check_files(self, artifact: Path, manifest: dict[str, Any]) -> None:
        named = manifest.get("file")
        if named != artifact.name:
            self._problem(f"{manifest_path(artifact)} describes {named!r}, not {artifact.name}")
            return
        if not artifact.is_file():
            if artifact.resolve() in self.vouched:
                self.report.checked.append(f"{artifact} (plaintext, held encrypted)")
            else:
                self._problem(f"{artifact} is missing (its manifest is there)")
            return
        actual = sha256_file(artifact)
        if actual != manifest.get("sha256"):
            self._problem(
                f"{artifact} does not match its manifest: sha256 {actual[:16]}..., "
                f"manifest {str(manifest.get('sha256'))[:16]}..."
            )
            return
        for name, digest in (manifest.get("companions") or {}).items():
            companion = artifact.with_name(name)
            self.accounted.add(companion.resolve())
            if not companion.is_file():
                self._problem(f"{companion} is missing (listed in {artifact.name}'s manifest)")
            elif sha256_file(companion) != digest:
                self._problem(f"{companion} does not match the sha256 its manifest lists")
        if manifest.get("format") == "encrypted":
            self._check_encrypted(artifact, manifest)
        self.report.checked.append(str(artifact))

    def _check_encrypted(self, artifact: Path, manifest: dict[str, Any]) -> None:
        parent = manifest.get("parent") or {}
        plaintext = resolve_recorded(str(parent.get("path", "")), artifact.parent)
        if plaintext is not None:
            self.vouched.add(plaintext.resolve())
        if self.key is None:
            self.report.notes.append(f"{artifact}: encrypted; its plaintext was not re-hashed")
            return
        from dlopt.trust.encryption import decrypt_file, plaintext_sha256

        members = decrypt_file(artifact, self.key)
        if plaintext_sha256(members) != parent.get("sha256"):
            self._problem(f"{artifact} decrypts to bytes that do not match its parent's sha256")

    def _check_parent(
        self, artifact: Path, manifest: dict[str, Any], parent: dict[str, Any]
    ) -> None:
        parent_path = resolve_recorded(str(parent["path"]), artifact.parent)
        if parent_path is None:
            self.report.notes.append(f"{artifact}: its parent lies outside this tree, not checked")
            return
        vouched = manifest.get("format") == "encrypted" and parent_path.resolve() in self.vouched
        if not parent_path.is_file() and not vouched:
            self._problem(f"{artifact}'s parent {parent_path} is missing")
            return
        if parent_path.is_file() and sha256_file(parent_path) != parent.get("sha256"):
            self._problem(
                f"{artifact}'s parent {parent_path} is not the file it was made from "
                "(its sha256 differs from the one recorded)"
            )
            return
        if manifest_path(parent_path).is_file():
            self.visit(parent_path)
        else:
            self.report.notes.append(f"{parent_path} has no manifest: the chain ends there")

    def _check_source(
        self, artifact: Path, parent: dict[str, Any] | None, manifest: dict[str, Any]
    ) -> None:
        """The root of a chain: the model file and weights it was exported or built from."""
        source = parent if parent is not None else manifest.get("source") or {}
        folder = artifact.parent
        reference = str(source.get("reference") or source.get("path") or "")
        target = reference.rsplit(":", 1)[0] if reference.count(":") else reference
        checks = [
            (target, source.get("file_sha256") or source.get("sha256"), "source"),
            (str(source.get("weights") or ""), source.get("weights_sha256"), "weights"),
        ]
        for recorded, digest, what in checks:
            if not recorded or not digest:
                continue
            located = resolve_recorded(recorded, folder)
            if located is None or not located.is_file():
                self.report.notes.append(f"{artifact}: {what} {recorded} is not here, not checked")
            elif sha256_file(located) != digest:
                self._problem(f"{artifact}'s {what} {located} changed since the artifact was made")

    def _problem(self, text: str) -> None:
        self.report.problems.append(text)


def _is_artifact(parent: dict[str, Any]) -> bool:
    kind = parent.get("format") or parent.get("kind")
    return kind in ARTIFACT_KINDS
