"""Why an accuracy or drift gate failed, and what the tool would try.

For each (variant, backend) whose accuracy_drop_max, relative_accuracy_min, cosine_min,
top1_agreement_min or kl_max gate failed, `dlopt diff` runs the FP32 reference (ONNX Runtime)
against the variant (on that backend) on the first evaluation samples, and the report names
the layers that add the most error. Then a suggestion by how the variant was made:
- INT8 (ONNX Runtime, TensorRT or OpenVINO targets): return those layers, with the quantized
  inputs they read, to float (`exclude`), or set a `max_drift` budget so the quantizer ranks
  nodes by their effect on the output itself; with how much of the speedup that keeps:
  measured where this run has a variant that already keeps nodes in float and passes,
  otherwise estimated from the MACs left in INT8 (Amdahl's law; the Q/DQ conversions it adds
  are not counted, so it is an upper bound);
- pruning: prune less or fine-tune longer.
A diagnosis that cannot run is recorded with its reason; it never changes a verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dlopt.errors import DloptError, first_line

if TYPE_CHECKING:
    from dlopt.gate.config import GateConfig


class VariantArtifact(Protocol):
    """What the pipeline knows of a variant it made (`pipeline.VariantArtifact`)."""

    name: str
    kind: str
    path: Path | None
    recipe: dict[str, Any]


ACCURACY_GATES = (
    "accuracy_drop_max",
    "relative_accuracy_min",
    "cosine_min",
    "top1_agreement_min",
    "kl_max",
)
# What each gate is as a `dlopt quantize --max-drift` budget.
BUDGET_OF_GATE = {
    "accuracy_drop_max": "accuracy_drop",
    "cosine_min": "cosine",
    "top1_agreement_min": "top1_agreement",
}
DIAGNOSIS_SAMPLES = 64  # enough to rank layers; a diff costs about two passes over them
CULPRITS = 3
DIFF_BACKENDS = ("onnxruntime", "openvino")


def diagnose_failures(
    gates: Sequence[Mapping[str, Any]],
    made: Sequence[VariantArtifact],
    rows: Sequence[Mapping[str, Any]],
    config: GateConfig,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """A diagnosis per (variant, backend) with a failed accuracy or drift gate."""
    failed: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for gate in gates:
        if gate["gate"] in ACCURACY_GATES and gate["verdict"] == "fail":
            failed.setdefault((gate["variant"], gate["backend"]), []).append(gate)
    artifacts = {variant.name: variant for variant in made}
    reference = made[0].path
    diagnoses = []
    for (name, backend), variant_gates in failed.items():
        variant = artifacts.get(name)
        if variant is None or variant.path is None or reference is None:
            continue
        say(f"locating the layers behind {name}'s failed gates on {backend}")
        entry: dict[str, Any] = {
            "variant": name,
            "backend": backend,
            "gates": [gate["gate"] for gate in variant_gates],
        }
        try:
            entry.update(_layer_diff(reference, variant.path, backend, config, variant_gates))
        except DloptError as error:
            entry["error"] = error.one_line()
        except Exception as error:  # a diagnosis must not take the gate run down with it
            entry["error"] = f"the layer diff crashed: {first_line(error)}"
        entry["suggestion"] = _suggestion(entry, variant, made, rows, variant_gates)
        diagnoses.append(entry)
    return diagnoses


def _layer_diff(
    reference: Path,
    candidate: Path,
    backend: str,
    config: GateConfig,
    gates: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    from dlopt.harness.layerdiff import DiffOptions, diff_models

    # The layer tolerance is the gate's own cosine limit where there is one.
    cosine_limits = [g["threshold"] for g in gates if g["gate"] == "cosine_min"]
    options = DiffOptions(
        reference_backend="onnxruntime",
        candidate_backend=backend if backend in DIFF_BACKENDS else None,
        samples=DIAGNOSIS_SAMPLES,
        threads=config.bench.threads,
        min_cosine=float(cosine_limits[0]) if cosine_limits else DiffOptions.min_cosine,
        top=5,
    )
    result = diff_models(str(reference), str(candidate), config.data.evaluation, options)
    first = result.first_beyond_tolerance
    matched = sum(found for found, _ in result.coverage.values())
    return {
        "samples": result.samples,
        "matched_layers": matched,
        "reference_layers": sum(total for _, total in result.coverage.values()),
        "min_cosine": result.min_cosine,
        "first_beyond_tolerance": _layer(first.to_dict()) if first else None,
        "worst": [_layer(layer.to_dict()) for layer in result.worst],
    }


def _layer(record: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("index", "layer", "op_type", "cosine", "sqnr_db", "input_sqnr_db", "max_abs_error")
    return {
        **{key: record.get(key) for key in keys},
        "reads_quantized": [item["layer"] for item in record.get("quantized_inputs") or []],
        "keep_float": list(record.get("keep_float") or []),
    }


def _suggestion(
    entry: Mapping[str, Any],
    variant: VariantArtifact,
    made: Sequence[VariantArtifact],
    rows: Sequence[Mapping[str, Any]],
    gates: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    recipe = variant.recipe
    if variant.kind == "prune":
        return {
            "text": f"prune less than amount = {recipe.get('amount', '?')}, or fine-tune longer "
            "(finetune.epochs): pruning removes channels, which float fallback cannot restore"
        }
    quantized = variant.kind == "quantize" or recipe.get("precision") == "int8"
    worst = entry.get("worst") or []
    if not quantized or not worst:
        return {
            "text": "run `dlopt diff` of the FP32 model and this variant on more samples to "
            "see which layers lose the accuracy"
        }
    nodes: list[str] = []
    for layer in worst[:CULPRITS]:
        nodes += [name for name in layer["keep_float"] if name not in nodes]
    budgets = [
        f"{BUDGET_OF_GATE[gate['gate']]}={gate['threshold']:g}"
        for gate in gates
        if gate["gate"] in BUDGET_OF_GATE and isinstance(gate.get("threshold"), (int, float))
    ]
    target = recipe.get("target", "openvino" if variant.kind == "build" else "onnxruntime")
    recipe_keys = f'quantize = {{ mode = "static", target = "{target}", exclude = [...] }}'
    text = (
        f"return these {len(nodes)} nodes to float: {', '.join(nodes)} "
        f"(`exclude` in a {recipe_keys} recipe, or `dlopt quantize --exclude`)"
    )
    if budgets:
        listed = ", ".join(f'"{budget}"' for budget in budgets)
        text += (
            f"; or set max_drift = [{listed}] with evaluation data, and the quantizer returns "
            "the nodes that hurt the output most to float until the budget holds"
        )
    kept = _measured_share(variant, made, rows, entry["backend"])
    if kept is None:
        kept = _estimated_share(variant, nodes, rows, entry["backend"])
    if kept is not None:
        text += f": {kept['text']}"
    return {"text": text, "exclude": nodes, "max_drift": budgets, "speedup_kept": kept}


def _measured_share(
    variant: VariantArtifact,
    made: Sequence[VariantArtifact],
    rows: Sequence[Mapping[str, Any]],
    backend: str,
) -> dict[str, Any] | None:
    """The speedup kept by a variant of this run made the same way but with nodes in float."""
    same = {"mode": variant.recipe.get("mode", "static"), "target": variant.recipe.get("target")}
    speedups = {
        r["variant"]: (r.get("speedup") or {}).get("ratio") for r in rows if r["backend"] == backend
    }
    own = speedups.get(variant.name)
    for other in made:
        recipe = other.recipe
        if (
            other is variant
            or other.kind != "quantize"
            or not (recipe.get("exclude") or recipe.get("max_drift"))
        ):
            continue
        if {"mode": recipe.get("mode", "static"), "target": recipe.get("target")} != same:
            continue
        theirs = speedups.get(other.name)
        if own and theirs:
            share = theirs / own
            return {
                "share": share,
                "basis": f"measured: {other.name}",
                "text": f"{other.name}, which keeps nodes in float, runs {theirs:.2f}x to this "
                f"variant's {own:.2f}x: {share:.0%} of its speedup (measured)",
            }
    return None


def _estimated_share(
    variant: VariantArtifact,
    nodes: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    backend: str,
) -> dict[str, Any] | None:
    """Amdahl: if a fraction f of the MACs goes back to float and the INT8 part ran S times
    faster, the model runs 1 / (f + (1 - f) / S) times faster; the share kept is that over S."""
    from dlopt.backends.base import describe_artifact

    speedup = next(
        (
            (r.get("speedup") or {}).get("ratio")
            for r in rows
            if r["variant"] == variant.name and r["backend"] == backend
        ),
        None,
    )
    if not speedup or variant.path is None or variant.path.suffix != ".onnx":
        return None
    from dlopt.harness.inspect.onnx_model import node_macs

    macs = node_macs(variant.path, describe_artifact(str(variant.path)).inputs or [])
    total = sum(macs.values())
    if not total:
        return None
    fraction = sum(macs.get(name, 0) for name in nodes) / total
    kept = 1 / (fraction + (1 - fraction) / speedup)
    share = kept / speedup
    return {
        "share": share,
        "basis": "estimated from MACs",
        "text": f"they hold {fraction:.1%} of the MACs, so about {share:.0%} of the "
        f"{speedup:.2f}x speedup stays ({kept:.2f}x; estimated from MACs, not counting the "
        "extra quantize/dequantize steps)",
    }
