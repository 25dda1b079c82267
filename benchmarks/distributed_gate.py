"""The same gate three ways: locally, through a local Ray cluster, and as CI shards merged.

Runs `dlopt gate CONFIG` with `--executor local` and `--executor ray` (a local Ray cluster
started for each run, its start-up included) alternately for `--rounds` rounds, so that the
machine's drift hits both alike; then the config in `--shards` shards (`--shard K/N`, one after
another) merged with `dlopt report merge`. Compares the verdicts (overall and gate by gate) and
the wall times. Prints a table and writes JSON.

    .venv/bin/python benchmarks/distributed_gate.py --config models/digits_cnn/dlopt.toml \\
        --json out/distributed_gate.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def gate(config: Path, out: Path, *args: str) -> dict[str, Any]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "dlopt", "gate", str(config), "-o", str(out), *args],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    report_path = out / "report.json"
    if not report_path.is_file():
        raise SystemExit(f"gate {args} wrote no report: {result.stderr[-2000:]}")
    return {"wall_s": wall, "exit_code": result.returncode, **verdicts(report_path)}


def verdicts(path: Path) -> dict[str, Any]:
    """The overall verdict and each gate's, by variant|backend|gate; a merged report's FP32
    gates are shard 1's (each shard measured its own reference)."""
    report = json.loads(path.read_text())
    gates = {}
    for item in report["gates"]:
        variant = item["variant"]
        if variant.startswith("fp32 (shard"):
            if item.get("shard") != 1:
                continue
            variant = "fp32"
        gates[f"{variant}|{item['backend']}|{item['gate']}"] = item["verdict"]
    return {"verdict": report["verdict"], "gates": gates}


def differences(first: dict[str, str], second: dict[str, str]) -> list[str]:
    keys = sorted(set(first) | set(second))
    return [
        f"{k}: {first.get(k)} vs {second.get(k)}" for k in keys if first.get(k) != second.get(k)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "models/digits_cnn/dlopt.toml")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("out/distributed_gate.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for round_index in range(args.rounds):
            order = ("local", "ray") if round_index % 2 == 0 else ("ray", "local")
            for executor in order:
                out = work / f"{executor}-{round_index}"
                runs.append({"run": executor, **gate(args.config, out, "--executor", executor)})
                print(f"{executor}: {runs[-1]['wall_s']:.1f} s, {runs[-1]['verdict']}", flush=True)
        shard_runs = []
        for index in range(1, args.shards + 1):
            out = work / f"shard-{index}"
            shard_runs.append(gate(args.config, out, "--shard", f"{index}/{args.shards}"))
            print(f"shard {index}/{args.shards}: {shard_runs[-1]['wall_s']:.1f} s", flush=True)
        merged_dir = work / "merged"
        reports = [str(work / f"shard-{i}" / "report.json") for i in range(1, args.shards + 1)]
        merge = subprocess.run(
            [sys.executable, "-m", "dlopt", "report", "merge", *reports, "-o", str(merged_dir)],
            capture_output=True,
            text=True,
        )
        merged = {"exit_code": merge.returncode, **verdicts(merged_dir / "report.json")}
    local = [run for run in runs if run["run"] == "local"]
    remote = [run for run in runs if run["run"] == "ray"]
    print(
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'run':>14} {'wall s':>8} {'verdict':>13} {'exit':>5}")
    for run in runs:
        print(f"{run['run']:>14} {run['wall_s']:>8.1f} {run['verdict']:>13} {run['exit_code']:>5}")
    shard_wall = [run["wall_s"] for run in shard_runs]
    each = ", ".join(f"{wall:.0f}" for wall in shard_wall)
    print(f"{'shards':>14} {sum(shard_wall):>8.1f}   (each {each} s, one after another)")
    print(f"{'merged':>14} {'':>8} {merged['verdict']:>13} {merged['exit_code']:>5}")
    comparisons = {
        "local vs ray (per round)": [
            differences(a["gates"], b["gates"]) for a, b in zip(local, remote, strict=True)
        ],
        "local vs local": differences(local[0]["gates"], local[-1]["gates"])
        if len(local) > 1
        else [],
        "merged vs local (first)": differences(local[0]["gates"], merged["gates"]),
    }
    for name, found in comparisons.items():
        print(f"{name}: {found or 'every gate verdict equal'}")
    ratio = sum(r["wall_s"] for r in remote) / sum(r["wall_s"] for r in local)
    print(f"wall time ray / local: {ratio:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "config": str(args.config),
                "load_average_before": load_before,
                "runs": runs,
                "shards": shard_runs,
                "merged": merged,
                "comparisons": comparisons,
                "ray_over_local_wall": ratio,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
