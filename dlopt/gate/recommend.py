"""The report's first answer: for each backend, which artifact to ship.

The pick is the fastest variant that passes every gate on that backend, judged by the low end
of its speedup interval (the speed it is sure to have, not its point estimate): a variant at
3.4x [3.3, 3.7] beats one at 3.6x [2.0, 4.1]. The FP32 reference counts as 1x [1, 1], so a
variant that is not surely faster than FP32 does not displace it. Variants whose intervals
overlap the pick's are listed as ties. When nothing passes, the nearest miss is named with the
gates it failed: the variant with the fewest failed gates, then the smallest relative margin.

Whatever the gates say, a variant is never picked on a backend where it runs slower than FP32
(a dynamic-INT8 ONNX ran 0.79-0.89x FP32 on OpenVINO) or where its outputs fall below
quantize's default budget against FP32 on that backend (an ORT INT8 GPT-2: cosine 0.99 on ONNX
Runtime, 0.80 on OpenVINO); the entry's `not_picked` says which and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

REFERENCE = "fp32"
PASSING = ("pass", "skipped")


def recommend(
    rows: Sequence[Mapping[str, Any]],
    gates: Sequence[Mapping[str, Any]],
    artifacts: Mapping[str, str | None],
    diagnoses: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """One entry per benched backend: `{"backend", "status": "ship" | "none passes", ...}`.

    `rows` and `gates` are the report's; `artifacts` maps variant names to artifact paths.
    """
    by_pair: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for gate in gates:
        by_pair.setdefault((gate["variant"], gate["backend"]), []).append(gate)
    backends = list(dict.fromkeys(row["backend"] for row in rows))
    reference_rows = {row["backend"]: row for row in rows if row["variant"] == REFERENCE}
    entries = []
    for backend in backends:
        measured = [r for r in rows if r["backend"] == backend and r["status"] == "ok"]
        verdicts = {
            row["variant"]: [
                *by_pair.get((row["variant"], backend), []),
                *by_pair.get((row["variant"], "-"), []),
            ]
            for row in measured
        }
        unfit = {r["variant"]: _unfit(r) for r in measured}
        passing = [
            r
            for r in measured
            if all(g["verdict"] in PASSING for g in verdicts[r["variant"]])
            and unfit[r["variant"]] is None
        ]
        failing = [r for r in measured if r not in passing]
        reference = reference_rows.get(backend)
        entry: dict[str, Any] = {"backend": backend}
        entry["not_picked"] = [
            {"variant": name, "reason": reason} for name, reason in unfit.items() if reason
        ]
        if passing:
            best = max(passing, key=lambda r: (_sure_speedup(r), -_size(r)))
            entry.update(status="ship", **_describe(best, reference, artifacts))
            entry["ties"] = [
                r["variant"]
                for r in passing
                if r is not best and r["variant"] != REFERENCE and _overlaps(r, best)
            ]
        else:
            entry["status"] = "none passes"
        if failing and (not passing or entry.get("variant") == REFERENCE):
            miss = min(failing, key=lambda r: _miss_score(verdicts[r["variant"]]))
            entry["nearest_miss"] = {
                **_describe(miss, reference, artifacts),
                "failed": [
                    {key: gate.get(key) for key in ("gate", "measured", "threshold", "reason")}
                    for gate in verdicts[miss["variant"]]
                    if gate["verdict"] not in PASSING
                ],
                "culprits": _culprits(diagnoses, miss["variant"], backend),
            }
        entries.append(entry)
    return entries


def _unfit(row: Mapping[str, Any]) -> str | None:
    """Why a variant must not be shipped for this backend whatever its gates say, or None."""
    from dlopt.optimize.quantize.budget import DEFAULT_BUDGETS

    if row["variant"] == REFERENCE:
        return None
    backend = row["backend"]
    speedup = (row.get("speedup") or {}).get("ratio")
    if isinstance(speedup, (int, float)) and speedup < 1:
        return f"slower than FP32 on {backend} ({speedup:.2f}x)"
    floor = next(b.value for b in DEFAULT_BUDGETS if b.metric == "cosine")
    cosine = (row.get("drift") or {}).get("cosine")
    if isinstance(cosine, (int, float)) and cosine < floor:
        return (
            f"cosine {cosine:.4f} against FP32 on {backend}, below the default budget ({floor:g})"
        )
    return None


def _describe(
    row: Mapping[str, Any], reference: Mapping[str, Any] | None, artifacts: Mapping[str, str | None]
) -> dict[str, Any]:
    speedup = row.get("speedup") or {}
    accuracy = (row.get("metrics") or {}).get("accuracy")
    reference_accuracy = ((reference or {}).get("metrics") or {}).get("accuracy")
    change = (
        accuracy - reference_accuracy
        if accuracy is not None and reference_accuracy is not None
        else None
    )
    return {
        "variant": row["variant"],
        "artifact": artifacts.get(row["variant"]),
        "speedup": speedup.get("ratio") if row["variant"] != REFERENCE else 1.0,
        "speedup_interval": speedup.get("interval") if row["variant"] != REFERENCE else None,
        "accuracy": accuracy,
        "accuracy_change": change,
        "cosine": (row.get("drift") or {}).get("cosine"),
        "model_size_mb": row.get("model_size_mb"),
        "peak_rss_mb": row.get("peak_rss_mb"),
        "latency_p50_ms": (row.get("latency_ms") or {}).get("p50"),
    }


def _sure_speedup(row: Mapping[str, Any]) -> float:
    """The low end of the speedup interval; 1 for the reference; 0 when unknown."""
    if row["variant"] == REFERENCE:
        return 1.0
    interval = (row.get("speedup") or {}).get("interval") or {}
    low = interval.get("low")
    return float(low) if isinstance(low, (int, float)) and math.isfinite(low) else 0.0


def _overlaps(row: Mapping[str, Any], best: Mapping[str, Any]) -> bool:
    def bounds(entry: Mapping[str, Any]) -> tuple[float, float] | None:
        if entry["variant"] == REFERENCE:
            return (1.0, 1.0)
        interval = (entry.get("speedup") or {}).get("interval") or {}
        low, high = interval.get("low"), interval.get("high")
        return None if low is None or high is None else (float(low), float(high))

    a, b = bounds(row), bounds(best)
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def _size(row: Mapping[str, Any]) -> float:
    size = row.get("model_size_mb")
    return float(size) if isinstance(size, (int, float)) else math.inf


def _miss_score(gates: Sequence[Mapping[str, Any]]) -> tuple[int, float]:
    """(failed gates, the largest relative distance of a failed measurement from its limit)."""
    failed = [gate for gate in gates if gate["verdict"] not in PASSING]
    margins = [_margin(gate) for gate in failed]
    return len(failed), max(margins, default=0.0)


def _margin(gate: Mapping[str, Any]) -> float:
    measured, threshold = gate.get("measured"), gate.get("threshold")
    if not isinstance(measured, (int, float)) or not isinstance(threshold, (int, float)):
        return math.inf  # crashed, missing: as far as it gets
    return abs(measured - threshold) / max(abs(threshold), 1e-12)


def _culprits(diagnoses: Sequence[Mapping[str, Any]], variant: str, backend: str) -> list[str]:
    for diagnosis in diagnoses:
        if diagnosis.get("variant") == variant and diagnosis.get("backend") == backend:
            return [layer["layer"] for layer in (diagnosis.get("worst") or [])]
    return []
