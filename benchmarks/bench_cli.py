"""CLI start-up: wall time of ``attmask --help`` and of a mistyped command, against ``import torch``
(what the CLI paid before it imported subcommand modules lazily). Each command is run as a fresh
process, interleaved, ``--runs`` times; the medians go to ``benchmarks/results/cli-startup.json``.

    python benchmarks/bench_cli.py [--runs 7] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from attmask.core.environment import environment

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
COMMANDS = {
    "attmask --help": [sys.executable, "-m", "attmask.cli.main", "--help"],
    "attmask pretrian (mistyped)": [sys.executable, "-m", "attmask.cli.main", "pretrian"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def measure(runs: int) -> dict[str, dict[str, float]]:
    """Median, min and max wall seconds of each command, runs interleaved (one warm-up round)."""
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for round_index in range(runs + 1):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, cwd=ROOT, capture_output=True)
            if round_index:  # the first round warms the file cache
                times[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v)} for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = {
        "benchmark": "cli-startup",
        "runs": args.runs,
        "commands": measure(args.runs),
        **environment(torch.device("cpu")),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "cli-startup.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    for name, figures in result["commands"].items():
        print(f"{name:32s} median {figures['median_s']:.3f} s (min {figures['min_s']:.3f}, max {figures['max_s']:.3f})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
