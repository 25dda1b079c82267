"""Where a report's rows ran: one line per machine (host, CPU model, ISA flags, GPUs) and the
(variant, backend) rows measured on it. Shown when the rows ran on a Ray cluster or in CI
shards, where that is not simply "this machine"."""

from __future__ import annotations

from typing import Any

from dlopt.plain_text import plain_text


def node_summary(report: dict[str, Any]) -> list[dict[str, str]]:
    """[{node, hardware, rows}], or [] for a run of the local executor on one machine."""
    distributed = (report.get("executor") or {}).get("name", "local") != "local"
    if not distributed and not report.get("shards"):
        return []
    machines: dict[str, dict[str, Any]] = {}
    for row in report.get("rows", []):
        node = row.get("node") or {}
        key = str(node.get("ray_node_id") or node.get("hostname") or "not placed")
        entry = machines.setdefault(key, {"node": node, "rows": []})
        label = f"{row['variant']} on {row['backend']}"
        entry["rows"].append(label if row.get("status") == "ok" else f"{label} ({row['status']})")
    summary = []
    for key, entry in machines.items():
        node = entry["node"]
        cpu = node.get("cpu") or {}
        hardware = ", ".join(
            part
            for part in (
                str(cpu.get("model") or ""),
                f"{cpu.get('logical_cores')} cores" if cpu.get("logical_cores") else "",
                " ".join(cpu.get("isa_flags") or []),
                "GPU: " + ", ".join(node.get("gpus")) if node.get("gpus") else "no GPU",
            )
            if part
        )
        name = str(node.get("hostname") or key)
        if node.get("ray_node_id"):
            name += f" (Ray node {str(node['ray_node_id'])[:12]})"
        summary.append(
            {
                "node": plain_text(name),
                "hardware": plain_text(hardware if node else "never reached a node"),
                "rows": plain_text(", ".join(entry["rows"])),
            }
        )
    return summary
