"""`dlopt report merge`: the reports of CI shards (`dlopt gate --shard K/N`) joined into one
verdict and one set of reports.

Refused (exit 2): a report that is no shard, shards of different configs (the config file's
sha256) or tool versions (dlopt, Python, the runtimes), a shard given twice or missing. Rows and
gates keep their shard's number; the FP32 reference, measured in every shard on that shard's
machine, appears once per shard as `fp32 (shard K/N)`. The verdict is judged again over every
gate: one failed gate in any shard fails the merge.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlopt.errors import ArtifactError
from dlopt.gate.config import REFERENCE_VARIANT
from dlopt.gate.verdicts import GateResult, Interval, Verdict, exit_code, overall_verdict
from dlopt.jsonio import json_safe

MERGED_KIND = "dlopt.gate.verdicts.report"


def merge_reports(paths: Sequence[Path]) -> dict[str, Any]:
    """One report from the shard reports at `paths`; raises ArtifactError (see above)."""
    from dlopt.report.write import read_report

    if not paths:
        raise ArtifactError("no shard report given", "give every shard's report.json")
    shards = sorted(((read_report(path), path) for path in paths), key=_index_of)
    first, first_path = shards[0]
    count = _shard_of(first, first_path)["count"]
    indices = [_shard_of(report, path)["index"] for report, path in shards]
    for report, path in shards[1:]:
        _check_same(first, first_path, report, path, count)
    duplicated = sorted({index for index in indices if indices.count(index) > 1})
    if duplicated:
        raise ArtifactError(
            f"shard {duplicated[0]}/{count} is given twice", "give each shard's report once"
        )
    missing = [index for index in range(1, count + 1) if index not in indices]
    if missing:
        raise ArtifactError(
            f"shard {missing[0]}/{count} is missing ({len(shards)} of {count} given)",
            "merge every shard: a verdict without one would not cover every variant",
        )
    rows: list[dict[str, Any]] = []
    gates: list[dict[str, Any]] = []
    variants: list[dict[str, Any]] = []
    for report, path in shards:
        index = _shard_of(report, path)["index"]
        label = f"{REFERENCE_VARIANT} (shard {index}/{count})"
        rename = {REFERENCE_VARIANT: label} if count > 1 else {}
        for key, target in (("rows", rows), ("gates", gates)):
            for item in report[key]:
                variant = rename.get(item["variant"], item["variant"])
                target.append({**item, "variant": variant, "shard": index})
        for entry in report.get("variants", []):
            name = rename.get(entry["name"], entry["name"])
            variants.append({**entry, "name": name, "shard": index})
    verdict = overall_verdict(_gate(item) for item in gates)
    merged = {
        **{key: value for key, value in first.items() if key not in ("rows", "gates")},
        "kind": MERGED_KIND,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "verdict": verdict.value,
        "exit_code": int(exit_code(verdict)),
        "shard": None,
        "shards": [
            {
                "index": _shard_of(report, path)["index"],
                "count": count,
                "report": str(path),
                "verdict": report["verdict"],
                "created_utc": report.get("created_utc"),
                "machine": report.get("machine"),
                "executor": report.get("executor"),
            }
            for report, path in shards
        ],
        "variants": variants,
        "rows": rows,
        "gates": gates,
    }
    return dict(json_safe(merged))


def _index_of(item: tuple[dict[str, Any], Path]) -> int:
    report, path = item
    return int(_shard_of(report, path)["index"])


def _shard_of(report: dict[str, Any], path: Path) -> dict[str, int]:
    shard = report.get("shard")
    if not isinstance(shard, dict) or not isinstance(shard.get("index"), int):
        raise ArtifactError(
            f"{path} is not a shard's report", "give reports of `dlopt gate CONFIG --shard K/N`"
        )
    return shard


def _check_same(
    first: dict[str, Any], first_path: Path, report: dict[str, Any], path: Path, count: int
) -> None:
    if _shard_of(report, path)["count"] != count:
        raise ArtifactError(
            f"{path} is a shard of {report['shard']['count']}, {first_path} of {count}",
            "merge the shards of one run (the same --shard K/N count)",
        )
    if report.get("config_sha256") != first.get("config_sha256"):
        raise ArtifactError(
            f"{path} and {first_path} come from different configs (their sha256 differ)",
            "merge shards of one config file, unchanged between them",
        )
    tools, first_tools = report.get("tool_versions") or {}, first.get("tool_versions") or {}
    for name in sorted(set(tools) | set(first_tools)):
        if tools.get(name) != first_tools.get(name):
            raise ArtifactError(
                f"{path} was made with {name} {tools.get(name, 'missing')}, {first_path} with "
                f"{first_tools.get(name, 'missing')}",
                "run every shard with the same dlopt and tool versions",
            )


def _gate(item: dict[str, Any]) -> GateResult:
    interval = item.get("interval")
    return GateResult(
        item["variant"],
        item["backend"],
        item["gate"],
        Verdict(item["verdict"]),
        item.get("measured"),
        item.get("threshold"),
        Interval(interval["low"], interval["high"]) if interval else None,
        item.get("reason") or "",
    )
