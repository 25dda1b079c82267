"""Eager PyTorch (a `model.py:factory` source with weights) and TorchScript files, on CPU."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dlopt.backends.base import (
    ArtifactInfo,
    Availability,
    CheckedSession,
    LoadOptions,
    describe_artifact,
    package_availability,
    unsupported_format,
)
from dlopt.errors import BackendError


class TorchBackend:
    name = "torch"
    formats = frozenset({"factory", "torchscript", "exported_program"})

    def availability(self) -> Availability:
        return package_availability("torch", "torch")

    def import_runtime(self) -> None:
        import torch  # noqa: F401

    def load(self, artifact: str, options: LoadOptions) -> TorchSession:
        info = describe_artifact(artifact)
        if info.format not in self.formats:
            raise unsupported_format(self.name, info, self.formats)
        return TorchSession(info, options)


class TorchSession(CheckedSession):
    def __init__(self, artifact: ArtifactInfo, options: LoadOptions) -> None:
        import torch

        from dlopt.sources import load_torch_model
        from dlopt.specs import random_feed
        from dlopt.torch_io import output_names

        threads = options.resolved_threads()
        torch.set_num_threads(threads)
        if artifact.encrypted:
            from dlopt.backends.encrypted import torch_module
            from dlopt.sources import LoadedModel, parse_source

            module = torch_module(artifact, options)
            loaded = LoadedModel(module, parse_source(artifact.text))
        else:
            loaded = load_torch_model(artifact.text, options.weights, options.allow_pickle)
        self.model = loaded.module
        self.where = f"torch session for {artifact.text}"
        inputs = artifact.inputs or loaded.default_inputs
        if not inputs:
            raise BackendError(
                f"{artifact.text} has no input specs (no manifest, no DLOPT_INPUTS)",
                "export it with `dlopt export`, or define DLOPT_INPUTS in the model file",
            )
        self.inputs = inputs
        self._stable_names = artifact.outputs
        self.output_names = artifact.outputs or output_names(
            self.model, random_feed(inputs), inputs
        )
        self.info: dict[str, Any] = {
            "threads": threads,
            "interop_threads": torch.get_num_interop_threads(),
            "format": artifact.format,
            "precision_hint": None,
            "device": "cpu",
            "torch_version": torch.__version__,
        }

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from dlopt.torch_io import run_torch

        return run_torch(self.model, feeds, self.inputs, names=self._stable_names)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
