"""Where an artifact came from, written so that it names no place on the build machine.

Manifests and reports record paths relative to the folder they are written in (an artifact's
manifest: the artifact's folder; a gate report: the report folder), so an output folder can be
moved, and `dlopt verify` still finds every parent. A path whose relative form would climb
to the filesystem root, or to the folder above the home directory (where it would spell a
user name), is withheld instead: `<outside>/model.py`, its hash still recorded. The command
line keeps its words, with the program as `dlopt` and absolute paths made relative the same way.

A manifest is sealed with the sha256 of its own canonical JSON (`manifest_sha256`): a hand
edit breaks the seal. (Anyone can re-seal an edited manifest; what makes a release
trustworthy is the signed attestation, see dlopt.gate.attestation.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

WITHHELD = "<outside>/"
SEAL_KEY = "manifest_sha256"
STAGING_PREFIX = ".dlopt-staging-"
# An absolute POSIX path inside a longer text: starts after a separator or quote, or right
# after the `hf:` and `text:` source prefixes and a `text:FILE@FOLDER`'s `@`, and stops at
# whitespace, quotes, brackets, commas, `#`, `@` or a colon (so `/x/data.py:evaluation` keeps
# its function name and `hf:/x#task` its task). Device and kernel paths (/dev/nvidia0) say
# nothing about the user: kept.
_ABSOLUTE_PATH = re.compile(
    r"(?:^|(?<=[\s'\"(=\[,@])|(?<=\bhf:)|(?<=\btext:))(?!/(?:dev|proc|sys)/)"
    r"(/[^\s'\":;,()\[\]{}<>|#@]+)"
)


def final_folder(artifact_path: Path) -> Path:
    """The folder an artifact ends up in: staging folders (`.dlopt-staging-*`, nested or not)
    are moved into their parent, so paths are made relative to that."""
    folder = Path(os.path.realpath(artifact_path.parent))
    while folder.name.startswith(STAGING_PREFIX):
        folder = folder.parent
    return folder


def portable(value: Any, folder: Path) -> Any:
    """`value` (a JSON tree) with every absolute path in its strings made relative to `folder`
    (see `portable_path`); the first command-line word becomes the program's name."""
    if isinstance(value, dict):
        return {
            key: _portable_command(item, folder) if key == "command" else portable(item, folder)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [portable(item, folder) for item in value]
    if isinstance(value, str) and "/" in value:
        return _ABSOLUTE_PATH.sub(lambda match: portable_path(match.group(1), folder), value)
    return value


def _portable_command(command: Any, folder: Path) -> Any:
    if not isinstance(command, list) or not command:
        return portable(command, folder)
    program = Path(str(command[0])).name
    program = "dlopt" if program in ("dlopt", "__main__.py", "dlopt.cli") else program
    return [program, *(portable(str(word), folder) for word in command[1:])]


def portable_path(path_text: str, folder: Path) -> str:
    """An absolute path relative to `folder`, or `<outside>/NAME` when the relative form would
    name folders above the shared ancestor's safe depth (see the module docstring)."""
    path = os.path.realpath(path_text)
    base = os.path.realpath(folder)
    try:
        common = Path(os.path.commonpath([path, base]))
    except ValueError:  # different drives
        return WITHHELD + Path(path).name
    home = Path(os.path.realpath(Path.home()))
    if len(common.parts) < 3 or (common in home.parents):
        return WITHHELD + Path(path).name
    return os.path.relpath(path, base)


def resolve_recorded(path_text: str, folder: Path) -> Path | None:
    """A path recorded by `portable_path` as a path on this machine, or None when withheld."""
    if not path_text or path_text.startswith(WITHHELD):
        return None
    path = Path(path_text)
    return path if path.is_absolute() else folder / path


def seal(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON, without its own seal."""
    body = {key: value for key, value in manifest.items() if key != SEAL_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
