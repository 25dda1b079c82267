"""What `dlopt diff` can be asked for, and the error it raises when two models cannot be
compared layer by layer."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dlopt.errors import ConfigError, DloptError

DIFF_FORMATS = ("onnx", "openvino_ir")
DEFAULT_BACKENDS = {"onnx": "onnxruntime", "openvino_ir": "openvino"}


class ModelMismatchError(DloptError):
    """Two models cannot be compared: different inputs, or no layer found in both."""


@dataclass(frozen=True)
class DiffOptions:
    """How to run and judge a layer-by-layer diff; validated on creation.

    `min_cosine` is the tolerance: the first layer (in graph order) below it is reported;
    `top` the number of layers that add the most error to list; `samples` caps the data
    (None: all of it); backends default to onnxruntime for ONNX and openvino for IR.
    """

    reference_backend: str | None = None
    candidate_backend: str | None = None
    samples: int | None = 256
    batch_size: int = 8
    threads: int | None = None
    min_cosine: float = 0.99
    top: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("reference_backend", "candidate_backend"):
            value = getattr(self, name)
            if value is not None and value not in DEFAULT_BACKENDS.values():
                raise ConfigError(
                    f"--{name.replace('_', '-')} {value!r} cannot show intermediate tensors",
                    f"use one of {', '.join(sorted(set(DEFAULT_BACKENDS.values())))}",
                )
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"--samples {self.samples} must be at least 1", "e.g. --samples 256")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size} must be at least 1", "e.g. 8")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads {self.threads} must be at least 1", "e.g. --threads 2")
        if not (math.isfinite(self.min_cosine) and -1.0 <= self.min_cosine <= 1.0):
            raise ConfigError(
                f"--min-cosine {self.min_cosine} is not a cosine", "give a value in [-1, 1]"
            )
        if self.top < 1:
            raise ConfigError(f"--top {self.top} must be at least 1", "e.g. --top 5")
