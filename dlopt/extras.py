"""Optional extras (`pip install 'dlopt[hf]'`, `'dlopt[torchvision]'`), imported only when a
command needs them; a missing one is a one-line error naming the extra."""

from __future__ import annotations

import importlib
from typing import Any

from dlopt.errors import SourceError

# extra -> the modules it provides, as pyproject.toml's [project.optional-dependencies] says.
EXTRAS = {
    "hf": ("transformers", "tokenizers"),
    "torchvision": ("torchvision",),
}


def require(module: str, extra: str, needed_for: str) -> Any:
    """Import `module` from the optional `extra`; raises SourceError (exit 2) naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise SourceError(
            f"{needed_for} needs the optional extra dlopt[{extra}] ({module} is not installed)",
            f"install it: pip install 'dlopt[{extra}]'",
        ) from error
