"""Getting a group's files to a Ray node and its results back, with no shared filesystem.

Out: each model's files (the artifact, its manifest, ONNX external data or the IR's `.bin`, a
factory's `.py` and weights) and the evaluation data, as bytes in Ray's object store, or, when the
user gives a stage URI (`s3://bucket/dlopt`, `file:///shared/dlopt`, anything fsspec opens),
uploaded there and downloaded by the node. The data is first written here as a folder of `.npy`
files (streamed, with the limit applied), so that a node reads exactly the samples checked here
and needs none of the data's code. Back: the files the workers wrote (outputs, logs, results).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlopt.errors import ConfigError

INPUTS = "inputs"
DATA = "data"


def artifact_files(text: str) -> tuple[Path, list[Path]]:
    """(the folder the model's files are relative to, the files) of a model source."""
    from dlopt.artifacts import manifest_path
    from dlopt.onnx_safety import check_external_data_paths
    from dlopt.sources import parse_source

    ref = parse_source(text)
    if ref.path is None:  # package.module:factory: it must be installed on the node too
        return Path("."), []
    path = ref.path.resolve()
    files = [path]
    manifest, weights = manifest_path(path), path.with_suffix(".bin")
    if manifest.is_file():
        files.append(manifest)
    if path.suffix == ".xml" and weights.is_file():
        files.append(weights)
    if ref.kind == "onnx":
        files += [file for file in check_external_data_paths(path) if file not in files]
    return path.parent, files


def relocated_source(text: str, folder: Path, new_folder: str) -> str:
    """`text` with its file path moved from `folder` to `new_folder` (a relative path)."""
    from dlopt.sources import parse_source

    ref = parse_source(text)
    if ref.path is None:
        return text
    moved = f"{new_folder}/{ref.path.resolve().relative_to(folder)}"
    return f"{moved}:{ref.attribute}" if ref.kind == "factory" and ref.attribute else moved


def materialize_data(
    source: str,
    specs: Sequence[Any],
    folder: Path,
    batch_size: int,
    limit: int | None,
    seed: int,
) -> Path:
    """The first `limit` samples (all of them when None) of a data source as a folder of
    `NAME.npy` files (and `labels.npy`), written batch by batch into memory-mapped files."""
    from dlopt.data import open_data
    from dlopt.harness.output_store import OutputWriter
    from dlopt.path_safety import check_path_segment

    for spec in specs:
        try:
            check_path_segment(spec.name, "input name")
        except ConfigError as error:
            raise ConfigError(
                f"{error.message}: it cannot name a file to send the data to Ray nodes",
                "run with --executor local, or rename the model's inputs",
            ) from error
    data = open_data(source, specs, batch_size, limit, seed)
    writer = OutputWriter(folder, 0, data.count_samples(), file_for=lambda _, name: f"{name}.npy")
    for batch in data:
        writer.append(batch.inputs, batch.labels)
    writer.close()
    return folder


class Stage:
    """Where files travel: Ray's object store (no URI), or a URI the user gave."""

    def __init__(self, uri: str | None) -> None:
        self.uri = uri.rstrip("/") if uri else None

    def send(self, files: Mapping[str, Path], prefix: str) -> dict[str, Any]:
        """relative name -> an ObjectRef, or the URI the file was uploaded to."""
        sent: dict[str, Any] = {}
        for name, path in files.items():
            if self.uri is None:
                import ray

                sent[name] = ray.put(path.read_bytes())
            else:
                sent[name] = f"{self.uri}/{prefix}/{name}"
                _upload(path, sent[name])
        return sent


def receive(files: Mapping[str, Any], folder: Path) -> None:
    """Write files sent by `Stage.send` (or returned by a node) into `folder`; a name that
    would land outside it is refused."""
    root = folder.resolve()
    for name, value in files.items():
        target = folder / name
        if Path(name).is_absolute() or not target.resolve().is_relative_to(root):
            raise ValueError(f"refusing to write {name!r} outside {folder}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, str):
            _download(value, target)
        elif isinstance(value, bytes):
            target.write_bytes(value)
        else:
            import ray

            target.write_bytes(ray.get(value))


def pack(folder: Path, stage: Stage, prefix: str) -> dict[str, Any]:
    """Every file under `folder`, as bytes (object store) or uploaded to the stage URI."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    packed: dict[str, Any] = {}
    for path in files:
        name = str(path.relative_to(folder))
        if stage.uri is None:
            packed[name] = path.read_bytes()
        else:
            packed[name] = f"{stage.uri}/{prefix}/{name}"
            _upload(path, packed[name])
    return packed


def _upload(path: Path, uri: str) -> None:
    from fsspec.core import url_to_fs

    filesystem, remote = url_to_fs(uri)
    filesystem.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
    filesystem.put_file(str(path), remote)


def _download(uri: str, path: Path) -> None:
    from fsspec.core import url_to_fs

    filesystem, remote = url_to_fs(uri)
    filesystem.get_file(remote, str(path))
