"""Where outputs may go, checked before any work starts.

Every command calls `check_outputs` first, so that:
- an output never overwrites an input: an output path that is an input (or one of its
  companion files: manifest, ONNX external data, IR weights), or a folder that contains one,
  is refused; two outputs at one path are refused too;
- long work is not thrown away at the end: each output file and folder is probed for
  writability (a temporary file created and removed in it, or in its nearest existing parent),
  which catches what `os.access` misses (root on a read-only mount, /proc, a path that is a
  folder).
`check_path_segment` says whether a user-given name can be a folder name on every filesystem.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from dlopt.errors import ArtifactError, ConfigError

# Names Windows reserves for devices, with any extension (CON, con.txt, LPT1.onnx ...).
_WINDOWS_DEVICES = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
_COMPANION_SUFFIXES = (".dlopt.json", ".data")


def check_outputs(
    inputs: Iterable[str | Path | None],
    folders: Iterable[Path | None] = (),
    files: Iterable[Path | None] = (),
) -> None:
    """Refuse outputs that would overwrite an input, collide, or cannot be written.

    `inputs` are what the command reads: paths or references such as `model.py:factory`
    (names that are no file, like `synthetic` or `pkg.module:factory`, are ignored). `folders`
    and `files` are the output folders and files (None entries are ignored). Raises
    ArtifactError (exit 2) naming the output, the input and the fix; creates nothing.
    """
    read = {_identity(path): path for text in inputs for path in _input_files(text)}
    outputs = [(path, True) for path in folders if path is not None]
    outputs += [(path, False) for path in files if path is not None]
    seen: dict[str, Path] = {}
    for path, is_folder in outputs:
        key = _identity(path)
        if key in seen:
            raise ArtifactError(
                f"two outputs go to the same path {path} ({seen[key]})",
                "give each output its own path",
            )
        seen[key] = path
        for input_key, input_path in read.items():
            if key == input_key or _same_file(path, input_path):
                raise ArtifactError(
                    f"output {path} is the input {input_path}: it would be overwritten",
                    "write the output somewhere else",
                )
            if is_folder and Path(input_key).is_relative_to(key):
                raise ArtifactError(
                    f"output folder {path} holds the input {input_path}, which the output "
                    "could overwrite",
                    "choose an output folder that holds no input",
                )
        _probe(path, is_folder)


def check_path_segment(name: str, what: str) -> None:
    """Refuse a name that is not one safe folder name on Linux, macOS and Windows.

    Raises ConfigError for separators, `.`/`..`, a leading dot or dash, a trailing dot or
    space, control characters, and Windows device names (CON, NUL, COM1 ...).
    """
    reason = None
    if not name or name in (".", ".."):
        reason = "is empty or a relative folder reference"
    elif any(char in name for char in '/\\:*?"<>|') or any(ord(char) < 32 for char in name):
        reason = "holds a path separator or a character filesystems refuse"
    elif name[0] in ".-" or name[-1] in ". ":
        reason = "starts with a dot or dash, or ends with a dot or space"
    elif _WINDOWS_DEVICES.match(name):
        reason = "is a device name on Windows"
    if reason:
        raise ConfigError(
            f"{what} {name!r} {reason}",
            "use letters, digits, _ . - (starting with a letter or digit)",
        )


def _input_files(reference: str | Path | None) -> list[Path]:
    """The existing files (and folders) a reference reads, with their companion files."""
    if reference is None:
        return []
    text = str(reference)
    candidates = [Path(text).expanduser()]
    target, sep, _ = text.rpartition(":")
    if sep and target:
        candidates.append(Path(target).expanduser())
    found = [path for path in candidates if path.exists()]
    companions = [
        path.with_name(path.name + suffix) for path in found for suffix in _COMPANION_SUFFIXES
    ]
    companions += [path.with_suffix(".bin") for path in found if path.suffix == ".xml"]
    return found + [path for path in companions if path.exists()]


def _identity(path: Path) -> str:
    """The absolute path with links resolved, so that two spellings of one file compare equal."""
    return str(Path(os.path.abspath(path.expanduser())).resolve())


def _same_file(first: Path, second: Path) -> bool:
    """Hard links and, on case-insensitive filesystems, other spellings of one file."""
    try:
        return first.exists() and os.path.samefile(first, second)
    except OSError:
        return False


def _probe(path: Path, is_folder: bool) -> None:
    """Create and remove a temporary file where the output will be written."""
    if path.is_dir() and not is_folder:
        raise ArtifactError(f"output {path} is a folder", "give a file name, e.g. report.json")
    if path.exists() and not path.is_dir() and is_folder:
        raise ArtifactError(
            f"output folder {path} exists and is not a folder", "choose another output folder"
        )
    folder = path if is_folder else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ArtifactError(
            f"cannot write {path}: {folder} is not a folder", "choose another output path"
        )
    try:
        handle, name = tempfile.mkstemp(prefix=".dlopt-probe-", dir=folder)
        os.close(handle)
        os.unlink(name)
    except OSError as error:
        raise ArtifactError(
            f"cannot write {path}: {error.strerror or error}",
            "choose a path you can write to",
        ) from error
