"""Wall time of `dlopt --help` and `dlopt backends`, interleaved (target: help <= 0.3 s).

Each round runs every command once, in turn, as a fresh process, so that the machine's drift
hits them alike. Prints a table (median, bootstrap 95% interval of the median, min) and writes
JSON.

    .venv/bin/python benchmarks/cli_startup.py --rounds 20 --json out/cli_startup.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dlopt.harness.statistics import median_interval

COMMANDS = {
    "dlopt --help": [sys.executable, "-m", "dlopt", "--help"],
    "dlopt backends": [sys.executable, "-m", "dlopt", "backends"],
}
HELP_TARGET_S = 0.3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", type=Path, default=Path("out/cli_startup.json"))
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():  # one untimed run each: page cache, .pyc files
        subprocess.run(command, capture_output=True, check=True)
    for _ in range(args.rounds):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            samples[name].append(time.perf_counter() - start)
    results = {}
    print(f"{'command':<16} {'median s':>9} {'95% CI':>17} {'min s':>7}")
    for name, values in samples.items():
        array = np.asarray(values)
        low, high = median_interval(array)
        results[name] = {
            "median_s": float(np.median(array)),
            "ci95_s": [low, high],
            "min_s": float(array.min()),
            "samples_s": values,
        }
        print(f"{name:<16} {np.median(array):>9.3f} [{low:.3f}, {high:.3f}] {array.min():>7.3f}")
    help_median = results["dlopt --help"]["median_s"]
    verdict = "meets" if help_median <= HELP_TARGET_S else "MISSES"
    print(f"dlopt --help {verdict} the {HELP_TARGET_S} s target (median {help_median:.3f} s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"rounds": args.rounds, "target_help_s": HELP_TARGET_S, "results": results}, indent=2
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
