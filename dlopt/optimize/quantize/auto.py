"""`--mode auto` (the default): the candidate recipes that make sense for the target and the
model (listed in candidates.py), of which the fastest within the accuracy budget is kept."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dlopt.errors import BudgetNotMetError
from dlopt.optimize.quantize.candidates import Candidate, choose
from dlopt.optimize.quantize.check import Staged
from dlopt.specs import TensorSpec

SMOOTHQUANT_DYNAMIC = "dynamic INT8 after SmoothQuant (NNCF scales)"


def quantize_auto(
    parent: Path,
    specs: Sequence[TensorSpec],
    parent_manifest: Mapping[str, Any],
    staging: Path,
    options: Any,
    say: Callable[[str], None],
) -> Staged:
    """`--mode auto` for the onnxruntime and openvino targets (see the module docstring)."""
    from dataclasses import replace

    if options.target == "openvino":
        return _openvino_auto(parent, specs, parent_manifest, staging, options, say)
    from dlopt.optimize.quantize.ort_candidates import (
        dynamic_candidate,
        static_candidate,
    )
    from dlopt.optimize.quantize.ort_job import OrtJob
    from dlopt.optimize.quantize.smoothquant_dynamic import smoothquant_dynamic_candidate

    job = OrtJob(parent, specs, staging, replace(options, mode="auto"), say)

    def made_as_is(build: Callable[[OrtJob, Path], Staged]) -> Callable[[Path], Staged]:
        def made(folder: Path) -> Staged:
            staged = build(job, folder)
            if not staged.recipe.get("kept_float_for_budget"):
                job.fallback = False  # later candidates skip their (slowing) fallback
            return staged

        return made

    candidates = []
    if options.calibration:
        scheme = "NNCF transformer scheme" if job.attention() else "ORT U8S8 QDQ"
        candidates.append(
            Candidate(f"static INT8 ({scheme})", made_as_is(static_candidate), "onnxruntime")
        )
        if job.attention():
            candidates.append(
                Candidate(
                    SMOOTHQUANT_DYNAMIC, made_as_is(smoothquant_dynamic_candidate), "onnxruntime"
                )
            )
    candidates.append(Candidate("dynamic INT8", made_as_is(dynamic_candidate), "onnxruntime"))
    return choose(candidates, parent, specs, job.evaluation(), staging, say)


def _openvino_auto(
    parent: Path,
    specs: Sequence[TensorSpec],
    parent_manifest: Mapping[str, Any],
    staging: Path,
    options: Any,
    say: Callable[[str], None],
) -> Staged:
    from dataclasses import replace

    from dlopt.optimize.quantize.check import reference_set
    from dlopt.optimize.quantize.openvino import cpu_has_bf16, quantize_to_ir, with_hint

    static = replace(options, mode="static")
    say("running the FP32 parent on the evaluation data")
    evaluation = reference_set(parent, specs, options)
    built: dict[str, Staged] = {}

    def f32(folder: Path) -> Staged:
        built["f32"] = quantize_to_ir(
            parent, specs, parent_manifest, folder, static, say, evaluation=evaluation
        )
        return built["f32"]

    def bf16(folder: Path) -> Staged:
        if "f32" not in built:
            raise BudgetNotMetError("the f32 IR it re-hints was not made")
        return with_hint(built["f32"], "bf16", evaluation, static, say)

    candidates = [Candidate("NNCF INT8 IR, f32 hint", f32, "openvino", "f32")]
    if cpu_has_bf16():
        candidates.append(Candidate("NNCF INT8 IR, bf16 hint", bf16, "openvino", "bf16"))
    return choose(candidates, parent, specs, evaluation, staging, say)
