"""Artifacts: a model file plus its manifest (a JSON sidecar), written atomically.

Every step of dlopt writes new artifacts and never changes its inputs. The manifest records
what the file is, where it came from (parent, recipe, command) and the tools that made it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from dlopt import __version__
from dlopt.errors import ArtifactError
from dlopt.trust.provenance import STAGING_PREFIX

MANIFEST_SUFFIX = ".dlopt.json"
# 2: relative paths, companion-file hashes, debug-metadata record and the manifest's own seal.
MANIFEST_SCHEMA_VERSION = 2
# Write failures that the user fixes, not dlopt: errno -> what to do about it.
WRITE_FAILURE_HINTS = {
    errno.ENOSPC: "free disk space there, or choose another output folder (-o)",
    errno.EDQUOT: "free space within your disk quota, or choose another output folder (-o)",
    errno.EROFS: "the filesystem is read-only: choose another output folder (-o)",
    errno.EACCES: "choose a folder you can write to (-o)",
}
_TRACKED_TOOLS = (
    "torch",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "openvino",
    "nncf",
    "torch-pruning",
    "numpy",
)
# The ISA features that decide which kernels (and so which speedups) a CPU gets.
_ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


@dataclass
class Manifest:
    """What an artifact is and how it was made (the JSON sidecar next to the model file)."""

    format: str
    file: str
    precision: str = "fp32"
    status: str = "ok"
    sha256: str = ""
    size_bytes: int = 0
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    opset: int | None = None
    source: dict[str, Any] = field(default_factory=dict)
    parent: dict[str, Any] | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    created_utc: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    tool_versions: dict[str, str] = field(default_factory=lambda: tool_versions())
    cpu: dict[str, Any] = field(default_factory=lambda: cpu_info())
    schema_version: int = MANIFEST_SCHEMA_VERSION
    # Files that belong to the model (IR .bin, ONNX external data): name -> sha256.
    companions: dict[str, str] = field(default_factory=dict)
    # What dlopt.trust.metadata_strip removed (or that it was kept), with the sizes.
    debug_metadata: dict[str, Any] = field(default_factory=dict)
    manifest_sha256: str = ""  # the seal: sha256 of the rest (dlopt.trust.provenance.seal)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"


def manifest_path(artifact_path: Path) -> Path:
    """`model.onnx` -> `model.onnx.dlopt.json`."""
    return artifact_path.with_name(artifact_path.name + MANIFEST_SUFFIX)


def read_manifest(artifact_path: Path) -> dict[str, Any] | None:
    """The artifact's manifest as a dict, or None when it has none."""
    path = manifest_path(artifact_path)
    if not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ArtifactError(
            f"cannot read manifest {path}: {error}", "delete it or re-create the artifact"
        ) from error
    return data


def write_manifest(artifact_path: Path, manifest: Manifest, final_dir: Path | None = None) -> Path:
    """Finish an artifact and write its sidecar atomically.

    First the file loses what it says about the build machine (dlopt.trust.metadata_strip, unless
    `--keep-debug-metadata`); then the file and its companions are hashed, the manifest's
    paths made relative to the artifact's folder and the manifest sealed (dlopt.trust.provenance),
    so that `dlopt verify` can re-check all of it. `final_dir`: the folder the artifact is
    moved to, when that is not its staging folder's parent (a candidate's own sub-folder).
    """
    from dlopt.trust.metadata_strip import strip_debug_metadata
    from dlopt.trust.provenance import final_folder, portable, seal

    stripped = strip_debug_metadata(artifact_path)
    if stripped is not None and (stripped.entries_removed or not manifest.debug_metadata):
        manifest.debug_metadata = stripped.to_dict()  # a re-write keeps the first record
    manifest.sha256 = sha256_file(artifact_path)
    manifest.size_bytes = artifact_size_bytes(artifact_path)
    manifest.companions = {file.name: sha256_file(file) for file in companion_files(artifact_path)}
    data = portable(
        asdict(manifest), final_dir.resolve() if final_dir else final_folder(artifact_path)
    )
    data["manifest_sha256"] = manifest.manifest_sha256 = seal(data)
    path = manifest_path(artifact_path)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def companion_files(artifact_path: Path) -> list[Path]:
    """The files that belong to a model file: an IR's `.bin`, an ONNX model's external data."""
    if artifact_path.suffix == ".xml":
        weights = artifact_path.with_suffix(".bin")
        return [weights] if weights.is_file() else []
    if artifact_path.suffix == ".onnx":
        from dlopt.errors import DloptError
        from dlopt.onnx_safety import check_external_data_paths

        try:
            return sorted(set(check_external_data_paths(artifact_path)))
        except DloptError:
            return []  # not a readable ONNX file: nothing to list; verify reports the file
    return []


def artifact_size_bytes(artifact_path: Path) -> int:
    """Size on disk, with the files that belong to the model (ONNX external data, IR .bin)."""
    total = artifact_path.stat().st_size
    for companion in (
        artifact_path.with_name(artifact_path.name + ".data"),
        artifact_path.with_suffix(".bin") if artifact_path.suffix == ".xml" else None,
    ):
        if companion is not None and companion.is_file():
            total += companion.stat().st_size
    return total


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that readers see the old file or the whole new one, never half."""
    with atomic_output(path) as temporary:
        temporary.write_text(text)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, else delete it.

    A write that fails for lack of space or permission becomes an ArtifactError naming `path`.
    """
    ensure_writable_dir(path.parent)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        # mkstemp makes 0600 files; give the result the permissions a plain open() would.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        failure = write_failure(error, path)
        if failure is not None:
            raise failure from error
        raise


@contextlib.contextmanager
def staging_dir(final_dir: Path) -> Iterator[Path]:
    """A temporary folder beside `final_dir` for multi-file outputs; removed afterwards.

    A write that fails for lack of space or permission becomes an ArtifactError naming
    `final_dir` (see `write_failure`).
    """
    ensure_writable_dir(final_dir)
    remove_stale_staging(final_dir)
    temporary = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=final_dir))
    try:
        yield temporary
    except Exception as error:
        failure = write_failure(error, final_dir)
        if failure is not None:
            raise failure from error
        raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def remove_stale_staging(folder: Path) -> list[Path]:
    """Remove the staging folders a killed run left in `folder`; returns what was removed.

    A staging folder is named after the process that made it (`.dlopt-staging-PID-xxxx`). It is
    stale when that process is gone, or when the PID now belongs to a process that started
    after the folder was last written (the PID was reused). Folders named without a PID (older
    dlopt) are stale too. A live run's folder is never touched.
    """
    import psutil

    removed = []
    for path in folder.glob(f"{STAGING_PREFIX}*"):
        match = re.match(rf"{re.escape(STAGING_PREFIX)}(\d+)-", path.name)
        if match and path.is_dir():
            try:
                started = psutil.Process(int(match.group(1))).create_time()
                if started <= path.stat().st_mtime + 1.0:  # create_time is coarse
                    continue  # its maker may still be running
            except (psutil.Error, OSError):
                pass  # no such process: stale
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def move_into_place(files: Sequence[Path], output_dir: Path) -> None:
    """Move staged files into `output_dir`, in the order given: the model file last, so that a
    reader never finds a model whose weights or manifest are not there yet. Everything was
    written in staging first, so a failed write (a full disk) left an earlier artifact as it
    was; os.replace is atomic per file."""
    for file in files:
        os.replace(file, output_dir / file.name)


def move_staging_into_place(
    staging: Path, output_dir: Path, model_suffixes: Sequence[str] = (".onnx", ".ts", ".xml")
) -> None:
    """Everything in `staging` (external data and manifests included), the model file last."""
    files = [path for path in staging.iterdir() if path.is_file()]
    move_into_place(sorted(files, key=lambda path: path.suffix in model_suffixes), output_dir)


def write_failure(error: BaseException, target: Path) -> ArtifactError | None:
    """An ArtifactError naming `target` when writing it failed for a reason the user fixes.

    Looks through `error` and its causes (exporters wrap the OSError) for an OSError whose errno
    is in WRITE_FAILURE_HINTS (disk full, over quota, read-only, not writable). Returns None when
    there is none, or for an EACCES on a file outside `target` (reading an input is not writing
    the output). A staging folder re-labels its inner failures with the final folder's name.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in WRITE_FAILURE_HINTS:
            if current.errno == errno.EACCES and not _concerns(current, target):
                return None
            return ArtifactError(
                f"cannot write {target}: {current.strerror or current}",
                WRITE_FAILURE_HINTS[current.errno],
            )
        current = current.__cause__ or current.__context__
    return None


def _concerns(error: OSError, target: Path) -> bool:
    """Whether the OSError is about `target` or a file inside its folder (or names no file)."""
    if not error.filename:
        return True
    folder = target if target.is_dir() else target.parent
    return Path(os.fsdecode(error.filename)).resolve().is_relative_to(folder.resolve())


def ensure_writable_dir(directory: Path) -> None:
    """Create `directory` if needed; raise ArtifactError when it cannot be written."""
    if directory.exists() and not directory.is_dir():
        raise ArtifactError(
            f"output path {directory} exists and is not a folder", "choose another output folder"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArtifactError(
            f"cannot create output folder {directory}: {error.strerror}",
            "choose a folder you can write to (-o)",
        ) from error
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ArtifactError(
            f"output folder {directory} is not writable", "choose a folder you can write to (-o)"
        )


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def tool_versions() -> dict[str, str]:
    """Installed versions of dlopt and the tools whose behaviour decides the results."""
    versions = {"dlopt": __version__, "python": platform.python_version()}
    for name in _TRACKED_TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_info() -> dict[str, Any]:
    """The CPU model, core count and the ISA flags that matter for kernels."""
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "model": platform.processor() or "unknown",
        "logical_cores": os.cpu_count(),
        "isa_flags": [],
    }
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                info["model"] = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                info["isa_flags"] = [flag for flag in _ISA_FLAGS if flag in flags]
                break
    return info
