"""`diff_models`: run a reference and a candidate on the same data with their intermediate
tensors exposed, and compare every matched tensor, batch by batch.

Memory stays bounded: each batch's activations are folded into per-layer sums
(`StreamingDrift`) and dropped, so a run holds one batch of activations of each model,
whatever the number of samples.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlopt.backends.base import ArtifactInfo, LoadOptions, Session, describe_artifact
from dlopt.errors import BackendError, SourceError
from dlopt.harness.drift import Drift, StreamingDrift
from dlopt.harness.layerdiff.graph import GraphView, ir_graph_view, onnx_graph_view
from dlopt.harness.layerdiff.match import Match, coverage_by_op_type, match_layers
from dlopt.harness.layerdiff.options import (
    DEFAULT_BACKENDS,
    DIFF_FORMATS,
    DiffOptions,
    ModelMismatchError,
)
from dlopt.harness.layerdiff.ranking import LayerResult, first_beyond, layer_results, most_added
from dlopt.specs import TensorSpec

Progress = Callable[[int, int | None], None]  # (samples done, samples planned or None)


@dataclass
class LayerDiff:
    """The outcome of a diff: per-layer results in graph order and what stands out."""

    reference: dict[str, Any]
    candidate: dict[str, Any]
    data: str
    samples: int
    min_cosine: float
    layers: list[LayerResult]
    coverage: dict[str, list[int]]
    first_beyond_tolerance: LayerResult | None
    worst: list[LayerResult]
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "dlopt.diff",
            "schema_version": 1,
            "reference": self.reference,
            "candidate": self.candidate,
            "data": self.data,
            "samples": self.samples,
            "min_cosine": self.min_cosine,
            "matched_layers": len(self.layers),
            "coverage_by_op_type": self.coverage,
            "first_beyond_tolerance": (
                self.first_beyond_tolerance.to_dict() if self.first_beyond_tolerance else None
            ),
            "worst": [result.to_dict() for result in self.worst],
            "layers": [result.to_dict() for result in self.layers],
            "skipped": self.skipped,
        }


@dataclass
class _Side:
    """One model of the diff: what it is, how it runs, and its layers."""

    role: str
    info: ArtifactInfo
    backend: str
    view: GraphView
    precision_hint: str | None

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.info.text,
            "format": self.info.format,
            "backend": self.backend,
            "precision": self.info.precision,
            "precision_hint": self.precision_hint,
        }


def diff_models(
    reference: str,
    candidate: str,
    data: str | None,
    options: DiffOptions,
    progress: Progress | None = None,
) -> LayerDiff:
    """Compare `candidate` with `reference` layer by layer on `data` (None: synthetic inputs).

    Raises SourceError for a model that cannot be read or compared (a torch model: export it
    first), BackendError when a backend cannot run it, ModelMismatchError when the inputs
    differ or no layer matches, DataError for bad data.
    """
    from dlopt.data import open_data

    ref = _side("reference", reference, options.reference_backend)
    cand = _side("candidate", candidate, options.candidate_backend)
    if ref.view.graph_inputs != cand.view.graph_inputs:
        raise ModelMismatchError(
            f"{candidate} takes inputs {sorted(cand.view.graph_inputs)} but {reference} takes "
            f"{sorted(ref.view.graph_inputs)}",
            "compare models with the same inputs",
        )
    matches = match_layers(ref.view, cand.view)
    if not matches:
        raise ModelMismatchError(
            f"no layer of {candidate} matches one of {reference} by tensor name",
            "compare a model with one made from it (quantized, converted to IR, or the same "
            "file on another backend)",
        )
    with tempfile.TemporaryDirectory(prefix="dlopt-diff-") as scratch, ExitStack() as stack:
        ref_session, ref_names = _exposed_session(
            ref, [m.reference_output for m in matches], Path(scratch) / "reference", options
        )
        stack.enter_context(ref_session)
        cand_session, cand_names = _exposed_session(
            cand, [m.candidate_output for m in matches], Path(scratch) / "candidate", options
        )
        stack.enter_context(cand_session)
        specs = _common_inputs(ref_session.inputs, cand_session.inputs, reference, candidate)
        source = open_data(data, specs, options.batch_size, options.samples, options.seed)
        drifts, shapes, skipped, samples = _accumulate(
            source, ref_session, cand_session, ref_names, cand_names, matches, options, progress
        )
    if not drifts:
        raise ModelMismatchError(
            f"no layer of {candidate} has the size of its match in {reference} "
            f"(e.g. {next(iter(skipped.values()), 'none measured')})",
            "a pruned model changes layer shapes: compare it with its own INT8 or IR copy",
        )
    results = layer_results(ref.view, cand.view, matches, drifts, shapes)
    return LayerDiff(
        reference=ref.describe(),
        candidate=cand.describe(),
        data=source.description,
        samples=samples,
        min_cosine=options.min_cosine,
        layers=results,
        coverage=coverage_by_op_type(ref.view, [m for m in matches if m.tensor in drifts]),
        first_beyond_tolerance=first_beyond(results, options.min_cosine),
        worst=most_added(results, options.top),
        skipped=skipped,
    )


def _side(role: str, text: str, backend: str | None) -> _Side:
    info = describe_artifact(text)
    if info.format not in DIFF_FORMATS or info.path is None:
        raise SourceError(
            f"{text} is a {info.format} model; dlopt diff compares ONNX and OpenVINO IR models",
            "export it first: dlopt export SOURCE --format onnx",
        )
    chosen = backend or DEFAULT_BACKENDS[info.format]
    if chosen == "onnxruntime" and info.format != "onnx":
        raise BackendError(
            f"onnxruntime cannot run {text} (an OpenVINO IR)",
            f"use --{role}-backend openvino",
        )
    if info.format == "onnx":
        view = onnx_graph_view(info.path)
    else:
        from dlopt.harness.layerdiff.expose import read_ir

        view = ir_graph_view(read_ir(info.path))
    return _Side(role, info, chosen, view, _recorded_precision_hint(info, chosen))


def _recorded_precision_hint(info: ArtifactInfo, backend: str) -> str | None:
    """The OpenVINO hint the artifact's manifest asks for (a bf16 IR records bf16): the exposed
    copy has no manifest, so it is passed on explicitly."""
    if backend != "openvino":
        return None
    recipe = (info.manifest or {}).get("recipe") or {}
    hint = (recipe.get("compile_properties") or {}).get("INFERENCE_PRECISION_HINT")
    return hint if isinstance(hint, str) else None


def _exposed_session(
    side: _Side, outputs: Sequence[str], folder: Path, options: DiffOptions
) -> tuple[Session, dict[str, str]]:
    """A backend session on a copy of the side's model that also returns `outputs`, and the
    map from the session's output names to those tensors."""
    from dlopt.backends import get_backend
    from dlopt.harness.layerdiff.expose import expose_ir, expose_onnx

    assert side.info.path is not None
    folder.mkdir()
    if side.info.format == "onnx":
        path = expose_onnx(side.info.path, outputs, _onnx_types(side.view, outputs), folder)
        names = {name: name for name in outputs}
    else:
        path, names = expose_ir(side.info.path, outputs, folder)
    load = LoadOptions(threads=options.threads, precision_hint=side.precision_hint)
    session = get_backend(side.backend).load(str(path), load)
    return session, names


def _onnx_types(view: GraphView, outputs: Sequence[str]) -> dict[str, int]:
    """Element types of the outputs to add: a dequantized copy has its float tensor's type."""
    standing_for = {copy: tensor for tensor, copy in view.consumer_view.items()}
    return {name: view.element_types[standing_for.get(name, name)] for name in outputs}


def _common_inputs(
    reference: Sequence[TensorSpec], candidate: Sequence[TensorSpec], ref: str, cand: str
) -> list[TensorSpec]:
    """The input specs to feed both; ModelMismatchError when names, ranks or dtypes differ.

    A candidate with static dims (an IR reshaped to a fixed batch) decides the batch size."""
    by_name = {spec.name: spec for spec in candidate}
    if set(by_name) != {spec.name for spec in reference}:
        raise ModelMismatchError(
            f"{cand} takes inputs {sorted(by_name)} but {ref} takes "
            f"{sorted(spec.name for spec in reference)}",
            "compare models with the same inputs",
        )
    for spec in reference:
        other = by_name[spec.name]
        if other.dtype != spec.dtype or len(other.dims) != len(spec.dims):
            raise ModelMismatchError(
                f"input {spec.name!r} is {other} in {cand} but {spec} in {ref}",
                "compare models with the same inputs",
            )
    stricter = any(
        not a.is_dynamic and b.is_dynamic
        for spec in reference
        for a, b in zip(by_name[spec.name].dims, spec.dims, strict=True)
    )
    return [by_name[spec.name] for spec in reference] if stricter else list(reference)


def _accumulate(
    source: Any,
    reference: Session,
    candidate: Session,
    reference_names: Mapping[str, str],
    candidate_names: Mapping[str, str],
    matches: Sequence[Match],
    options: DiffOptions,
    progress: Progress | None,
) -> tuple[dict[str, Drift], dict[str, list[int]], dict[str, str], int]:
    """Per-tensor streaming drift over every batch; tensors whose sizes differ are skipped."""
    sums: dict[str, StreamingDrift] = {}
    shapes: dict[str, list[int]] = {}
    skipped: dict[str, str] = {}
    samples = 0
    for batch in source:
        ref_out = _by_tensor(reference.run(batch.inputs), reference_names)
        cand_out = _by_tensor(candidate.run(batch.inputs), candidate_names)
        for match in matches:
            if match.tensor in skipped:
                continue
            expected = ref_out.get(match.reference_output)
            produced = cand_out.get(match.candidate_output)
            if expected is None or produced is None:
                skipped[match.tensor] = "not returned by the backend"
                continue
            if expected.size != produced.size:
                skipped[match.tensor] = (
                    f"shape {list(produced.shape)} in the candidate, "
                    f"{list(expected.shape)} in the reference"
                )
                sums.pop(match.tensor, None)
                continue
            shapes.setdefault(match.tensor, list(expected.shape))
            sums.setdefault(match.tensor, StreamingDrift()).update(produced, expected)
        del ref_out, cand_out
        samples += batch.size
        if progress is not None:
            progress(samples, options.samples)
    return {name: stats.result() for name, stats in sums.items()}, shapes, skipped, samples


def _by_tensor(
    outputs: Mapping[str, np.ndarray], names: Mapping[str, str]
) -> dict[str, np.ndarray]:
    return {names[name]: value for name, value in outputs.items() if name in names}
