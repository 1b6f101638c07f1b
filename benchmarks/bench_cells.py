"""How to spend a small CPU on an ablation: one cell at a time on every core, or several cells side
by side on one core each? Aggregate training throughput of the two layouts, interleaved.

Trains one cell of a masking-experiment preset (default: ``cpu_v2``'s AttMask-High, seed 0, the
recipe of the committed ablation) with ``attmask pretrain`` in each layout ``PxT``: P processes
started together, ``train.num_threads=T`` each (``1x2``: one process on two threads, as the
experiment runs; ``2x1``: two processes on one thread each, e.g. two ``--cells`` selections). The
layouts alternate ``--rounds`` times in one call, so a drift in the machine's speed hits both. From
each process's log:

* ``steady_steps_per_second``: steps between the first and the last logged step over their
  training-loop seconds (start-up, data loading and the first steps excluded);
* per layout, ``aggregate_steps_per_second``: the processes' steady rates summed, and
  ``wall_steps_per_second``: all processes' steps over the wall time from the first start to the
  last exit (start-up included).

Writes ``benchmarks/results/cells-<device>.json`` with device, versions and commit. Meaningful only
on an otherwise idle machine (pause a running experiment: ``kill -STOP``). The cells' evaluation
(k-NN monitor, linear probe) is not measured. ``--smoke``: 4 steps of 16 images on 20 digits per class, once.

Usage: ``python benchmarks/bench_cells.py [--preset cpu_v2] [--arm attmask_high] [--steps 200]
[--rounds 2] [--layouts 1x2 2x1] [--smoke] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from attmask.cli.experiment import preset_path
from attmask.config import save_config
from attmask.core.environment import environment
from attmask.engine.logging import read_log
from attmask.experiments import MaskingExperiment, load_experiment

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SMOKE = ["data.source=digits", "data.subset=null", "data.per_class=20", "data.num_workers=0", "data.batch_size=16"]


def cell_config(preset: str, arm: str, seed: int, path: Path, smoke: bool) -> dict:
    """Write the resolved pretraining config of the preset's main-table cell ``arm``/``seed`` to
    ``path``; returns what was chosen."""
    experiment_config, pretrain_preset = load_experiment(preset_path(preset))  # a name or a file, as the CLI takes
    experiment = MaskingExperiment(experiment_config, pretrain_preset, path.parent, SMOKE if smoke else [])
    cells = [c for c in experiment.cells().main if c.arm == arm and c.seed == seed]
    if not cells:
        raise SystemExit(f"bench_cells: preset {preset!r} has no main-table cell {arm} seed {seed}")
    save_config(experiment.pretrain_config(cells[0]), path)
    return {"preset": preset, "cell": cells[0].name}


def launch(config: Path, out: Path, threads: int, steps: int, log_every: int) -> subprocess.Popen:
    """Start one ``attmask pretrain`` of ``steps`` steps (no monitors) on ``threads`` threads."""
    overrides = [
        "optim.epochs=1",
        f"train.max_steps_per_epoch={steps}",
        "train.knn_every_epochs=0",
        "train.progress=false",
        "train.loggers=[jsonl]",
        f"train.log_every_steps={log_every}",
        f"train.num_threads={threads}",
    ]
    command = [sys.executable, "-m", "attmask.cli.main", "pretrain", "--config", str(config), "--out", str(out)]
    for item in overrides:
        command += ["--set", item]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def steady_rate(run_dir: Path) -> tuple[int, float]:
    """``(steps trained, steady steps/s)`` from a finished run's log."""
    rows = [r for r in read_log(run_dir) if "train_seconds" in r and "images_per_second" in r]
    first, last = rows[0], rows[-1]
    seconds = last["train_seconds"] - first["train_seconds"]
    return last["step"], (last["step"] - first["step"]) / seconds if seconds > 0 else float("nan")


def run_layout(layout: str, config: Path, scratch: Path, steps: int, log_every: int) -> dict:
    """Every process of ``layout`` (``PxT``) started together; their rates once all have exited."""
    processes, threads = (int(part) for part in layout.split("x"))
    started = time.perf_counter()
    runs = [launch(config, scratch / f"p{index}", threads, steps, log_every) for index in range(processes)]
    for index, process in enumerate(runs):
        _, error = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"bench_cells: process {index} of {layout} failed: {error.strip().splitlines()[-1]}")
    wall = time.perf_counter() - started
    rates = [steady_rate(scratch / f"p{index}") for index in range(processes)]
    return {
        "layout": layout,
        "processes": processes,
        "threads": threads,
        "steady_steps_per_second": [rate for _, rate in rates],
        "aggregate_steps_per_second": sum(rate for _, rate in rates),
        "wall_seconds": wall,
        "wall_steps_per_second": sum(done for done, _ in rates) / wall,
    }


def summarize(runs: list[dict], layouts: list[str]) -> dict:
    """Medians per layout and each layout's median aggregate rate over the first layout's."""
    out: dict = {}
    for layout in layouts:
        chosen = [r for r in runs if r["layout"] == layout]
        out[layout] = {
            key: statistics.median(r[key] for r in chosen)
            for key in ("aggregate_steps_per_second", "wall_steps_per_second", "wall_seconds")
        }
    base = out[layouts[0]]["aggregate_steps_per_second"]
    out["aggregate_ratio_to_first"] = {layout: out[layout]["aggregate_steps_per_second"] / base for layout in layouts}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu_v2", help="masking experiment preset name or YAML file")
    parser.add_argument("--arm", default="attmask_high", help="main-table arm whose cell is trained")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per process")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the layouts")
    parser.add_argument("--layouts", nargs="+", default=["1x2", "2x1"], help="PxT: P processes, T threads each")
    parser.add_argument("--smoke", action="store_true", help="4 steps, one round, tiny data (CI)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    for layout in args.layouts:
        parts = layout.split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            parser.error(f"--layouts takes PxT with positive P and T, e.g. 2x1; got {layout!r}")
    steps, rounds, log_every = (4, 1, 1) if args.smoke else (args.steps, args.rounds, 10)
    if steps < 2 * log_every:
        parser.error(f"--steps must be at least {2 * log_every}, got {steps}")
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        chosen = cell_config(args.preset, args.arm, args.seed, Path(scratch) / "cell.yaml", args.smoke)
        for index in range(rounds):
            for layout in args.layouts:
                folder = Path(scratch) / f"{index}-{layout}"
                runs.append(
                    {"round": index, **run_layout(layout, Path(scratch) / "cell.yaml", folder, steps, log_every)}
                )
                print(
                    f"round {index} {layout}: {runs[-1]['aggregate_steps_per_second']:.2f} steps/s steady, "
                    f"{runs[-1]['wall_steps_per_second']:.2f} with start-up ({runs[-1]['wall_seconds']:.0f} s)",
                    flush=True,
                )
    result = {
        "benchmark": "cells",
        **environment(torch.device("cpu")),
        "setting": {**chosen, "steps": steps, "rounds": rounds, "layouts": args.layouts, "smoke": args.smoke},
        "runs": runs,
        "summary": summarize(runs, args.layouts),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"cells-{'smoke-' if args.smoke else ''}cpu.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    ratios = result["summary"]["aggregate_ratio_to_first"]
    print(
        "aggregate steady throughput over "
        + args.layouts[0]
        + ": "
        + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
