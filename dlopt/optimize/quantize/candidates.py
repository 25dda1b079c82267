"""Choosing between candidate recipes (`--mode auto`, and static against dynamic when static
needed its fallback): build each, keep those within the accuracy budget, time them against the
FP32 parent interleaved, return the fastest with the record of the choice.

The candidates `--mode auto` tries (auto.py):
- onnxruntime: dynamic INT8, and with calibration data static INT8 (NNCF's transformer scheme
  for graphs with attention, ORT's U8S8 QDQ otherwise) and, for graphs with attention, dynamic
  INT8 after SmoothQuant (smoothquant_dynamic.py: as accurate as static there and faster on
  ORT's CPU kernels); static and dynamic each with its own bounded fallback that
  returns the most harmful nodes to float when it misses the budget, skipped once an earlier
  candidate met the budget as it was made (a fallback only makes a model slower);
- openvino: the NNCF INT8 IR compiled with an f32 precision hint, and on CPUs with bf16 the same
  IR with a bf16 hint (the layers left in float then run in bf16: 3-4% faster on MiniLM at the
  same cosine; Optimum Intel's default);
- tensorrt: static only (its engines are built elsewhere), torch: dynamic only.
Every candidate is checked for drift on the evaluation data; those within budget are timed
against the FP32 parent on the target's runtime, interleaved in this process (1 thread, the
input spec's batch), and the fastest by median speedup wins. The manifest's `recipe.auto` and
the printout say what was tried, what each gave and why the winner won.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlopt.errors import BudgetNotMetError, ConfigError, DataError, DloptError
from dlopt.optimize.quantize.check import Staged
from dlopt.optimize.quantize.evaluation import EvaluationSet
from dlopt.specs import TensorSpec

# Threads the candidates are timed at: steadier on a shared machine than all cores, and the
# ratio to FP32 is what decides.
TIMING_THREADS = 1
TIMING_ROUNDS = 12


@dataclass
class Candidate:
    """A recipe to try: `build(folder)` makes it (raising BudgetNotMetError when even its
    fallback misses the budget); `runtime` and `precision_hint` say how it is timed."""

    name: str
    build: Callable[[Path], Staged]
    runtime: str
    precision_hint: str = "f32"


def choose(
    candidates: Sequence[Candidate],
    parent: Path,
    specs: Sequence[TensorSpec],
    evaluation: EvaluationSet,
    staging: Path,
    say: Callable[[str], None],
) -> Staged:
    """Build every candidate, time those within budget against `parent`, return the fastest
    with the record of the choice in `recipe["auto"]`. Raises BudgetNotMetError when none
    meets the budget (naming what each gave)."""
    tried: list[dict[str, Any]] = []
    made: list[tuple[Candidate, Staged]] = []
    for index, candidate in enumerate(candidates):
        say(f"candidate {index + 1}/{len(candidates)}: {candidate.name}")
        try:
            staged = candidate.build(staging / f"candidate-{index}")
        except BudgetNotMetError as error:
            tried.append(
                {"candidate": candidate.name, "status": "over budget", "reason": error.message}
            )
            continue
        except (ConfigError, DataError):
            raise  # the user's input is wrong for every candidate alike: exit 2 now
        except DloptError as error:
            tried.append({"candidate": candidate.name, "status": "failed", "reason": error.message})
            continue
        made.append((candidate, staged))
        tried.append({"candidate": candidate.name, "status": "within budget", **_gave(staged)})
    if not made and all(entry["status"] == "failed" for entry in tried):
        from dlopt.optimize.quantize.options import QuantizeError

        raise QuantizeError(
            "every candidate failed: "
            + "; ".join(f"{entry['candidate']}: {entry['reason']}" for entry in tried),
            "choose one with --mode and see its error, or --exclude the failing node",
        )
    if not made:
        raise BudgetNotMetError(
            "no candidate met the budget: "
            + "; ".join(f"{entry['candidate']}: {entry['reason']}" for entry in tried),
            "relax --max-drift, give more representative --calibration data, or try another "
            "--target",
        )
    say("timing the candidates against FP32, interleaved")
    speeds = _time(made, parent, specs, evaluation)
    for entry in tried:
        if entry["candidate"] in speeds:
            entry["speedup"] = speeds[entry["candidate"]]
    winner, staged = max(made, key=lambda pair: speeds[pair[0].name]["ratio"])
    others = [
        f"{candidate.name} {_speed_text(speeds[candidate.name])}"
        for candidate, _ in made
        if candidate is not winner
    ]
    missed = [entry["candidate"] for entry in tried if entry["status"] != "within budget"]
    why = f"fastest within budget: {_speed_text(speeds[winner.name])}"
    if others:
        why += f" (vs {', '.join(others)})"
    if missed:
        why += f"; not within budget: {', '.join(missed)}"
    staged.recipe["auto"] = {
        "tried": tried,
        "winner": winner.name,
        "why": why,
        "timing": {
            "against": f"FP32 parent on {winner.runtime}",
            "threads": TIMING_THREADS,
            "rounds": TIMING_ROUNDS,
            "batch": _timing_batch(specs),
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
    }
    return staged


def _gave(staged: Staged) -> dict[str, Any]:
    drift = staged.drift
    keys = ("cosine", "top1_agreement", "sqnr_db", "accuracy_drop")
    return {
        "mode": staged.recipe.get("mode"),
        "tool": staged.recipe.get("tool"),
        "kept_float_for_budget": len(staged.recipe.get("kept_float_for_budget") or []),
        **{key: drift[key] for key in keys if key in drift},
    }


def _speed_text(speed: Mapping[str, Any]) -> str:
    return f"{speed['ratio']:.2f}x [{speed['low']:.2f}, {speed['high']:.2f}]"


def _timing_batch(specs: Sequence[TensorSpec]) -> int:
    """The batch the inputs are specified at (their example size), 1 when unknown."""
    dims = specs[0].dims if specs else []
    return max(1, int(dims[0].size)) if dims and dims[0].size else 1


def _time(
    made: Sequence[tuple[Candidate, Staged]],
    parent: Path,
    specs: Sequence[TensorSpec],
    evaluation: EvaluationSet,
) -> dict[str, dict[str, Any]]:
    from dlopt.harness.interleave import interleaved_speedups
    from dlopt.optimize.runners import ir_runner, onnx_runner

    feeds, _ = evaluation.head(_timing_batch(specs))
    feed = _rows(feeds, _timing_batch(specs))
    runtime = made[0][0].runtime
    runs: dict[str, Callable[[], object]] = {}
    reference = "FP32"
    if runtime == "openvino":
        fp32 = ir_runner(parent, "f32", threads=TIMING_THREADS)
    else:
        fp32 = onnx_runner(parent, threads=TIMING_THREADS)
    runs[reference] = lambda: fp32(feed)
    for candidate, staged in made:
        model = staged.files[-1]
        if candidate.runtime == "openvino":
            run = ir_runner(model, candidate.precision_hint, threads=TIMING_THREADS)
        else:
            run = onnx_runner(model, threads=TIMING_THREADS)
        runs[candidate.name] = lambda run=run: run(feed)  # type: ignore[misc]
    speeds = interleaved_speedups(runs, reference, rounds=TIMING_ROUNDS)
    return {name: speed.to_dict() for name, speed in speeds.items() if name != reference}


def _rows(feeds: Sequence[Mapping[str, np.ndarray]], rows: int) -> dict[str, np.ndarray]:
    """`rows` samples from the first feeds (repeated when there are fewer)."""
    joined = {name: np.concatenate([feed[name] for feed in feeds]) for name in feeds[0]}
    count = next(iter(joined.values())).shape[0]
    index = np.arange(rows) % max(count, 1)
    return {name: value[index] for name, value in joined.items()}
