"""The runners drift and parity checks inside optimize/ call: the backends' checked sessions
(feed names, shapes and dtypes checked; outputs by name), never ad-hoc runtime sessions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

RunFn = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def onnx_runner(
    path: Path, output_names: Sequence[str] | None = None, threads: int | None = None
) -> RunFn:
    """All outputs of an ONNX file on ONNX Runtime's CPU provider (the reference runtime for
    drift, wherever dlopt runs), renamed to `output_names` when their count matches."""
    from dlopt.backends import get_backend
    from dlopt.backends.base import LoadOptions

    options = LoadOptions(provider="cpu", threads=threads)
    session = get_backend("onnxruntime").load(str(path), options)
    return _named(session.run, output_names)


def ir_runner(
    path: Path,
    precision_hint: str,
    output_names: Sequence[str] | None = None,
    threads: int | None = None,
) -> RunFn:
    """All outputs of an OpenVINO IR (or ONNX file) compiled as the openvino backend does."""
    from dlopt.backends import get_backend
    from dlopt.backends.base import LoadOptions

    options = LoadOptions(precision_hint=precision_hint, threads=threads)
    session = get_backend("openvino").load(str(path), options)
    return _named(session.run, output_names)


def _named(run: RunFn, names: Sequence[str] | None) -> RunFn:
    if not names:
        return run

    def renamed(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = run(feed)
        if len(outputs) != len(names):
            return outputs
        return dict(zip(names, outputs.values(), strict=True))

    return renamed
