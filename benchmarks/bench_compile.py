"""Does ``train.compile`` pay for ``make demo`` on a CPU? Eager against compiled, interleaved.

Trains the demo preset (``configs/fashion_mnist_ibot_attmask_tiny.yaml``) for ``--steps``
optimizer steps with and without ``train.compile=true`` (``torch.compile`` of both backbones,
``dynamic=True``), alternating eager / compiled ``--rounds`` times in one call so that a drift in
the machine's speed hits both alike. From each run's log:

* ``first_log_seconds``: training-loop seconds until the first logged step (``--log-every``),
  which for the compiled run holds the compilation;
* ``steady_ms_per_step``: milliseconds per step between the first and the last logged step;
* ``wall_seconds``: the whole ``attmask pretrain`` process, start-up included;
* ``break_even_steps``: after how many steps the compiled run's extra warm-up is paid back by
  its faster steps (None when its steps are not faster);
* ``demo_seconds``: the demo's 1800 steps, estimated as first-log time plus steady rate.

Writes ``benchmarks/results/compile-<device>.json`` with the device, versions and commit. Only
meaningful on an otherwise idle machine. ``--smoke`` runs 4 steps once each (for CI).

Usage: ``python benchmarks/bench_compile.py [--steps 300] [--rounds 2] [--smoke] [--out DIR]``
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

from attmask.core.environment import environment
from attmask.engine.logging import read_log

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PRESET = "configs/fashion_mnist_ibot_attmask_tiny.yaml"
DEMO_STEPS = 1800


def train(compiled: bool, steps: int, log_every: int, out: Path, smoke: bool) -> dict:
    """One ``attmask pretrain`` run of ``steps`` steps; its timings from the log."""
    overrides = [
        "optim.epochs=1",
        f"train.max_steps_per_epoch={steps}",
        "train.knn_every_epochs=0",
        "train.knn_baseline=false",
        "train.progress=false",
        f"train.log_every_steps={log_every}",
        f"train.compile={str(compiled).lower()}",
    ]
    if smoke:
        overrides += ["data.subset=null", "data.per_class=40", "data.num_workers=0"]
    command = [sys.executable, "-m", "attmask.cli.main", "pretrain", "--config", PRESET, "--out", str(out)]
    for item in overrides:
        command += ["--set", item]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    rows = [r for r in read_log(out) if "train_seconds" in r and "images_per_second" in r]
    first, last = rows[0], rows[-1]
    steady = (last["train_seconds"] - first["train_seconds"]) / max(last["step"] - first["step"], 1)
    return {
        "compiled": compiled,
        "steps": last["step"],
        "first_log_step": first["step"],
        "first_log_seconds": first["train_seconds"],
        "steady_ms_per_step": 1000 * steady,
        "train_seconds": last["train_seconds"],
        "wall_seconds": wall,
        "loss_last": last["loss"],
    }


def summarize(runs: list[dict]) -> dict:
    """Medians per variant, the compiled/eager ratio of steady step time, the break-even step
    count and the estimated time of the demo's 1800 steps."""
    out: dict = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        chosen = [r for r in runs if r["compiled"] == compiled]
        out[name] = {
            key: statistics.median(r[key] for r in chosen)
            for key in ("first_log_seconds", "steady_ms_per_step", "train_seconds", "wall_seconds")
        }
        first_step = chosen[0]["first_log_step"]
        out[name]["demo_seconds"] = (
            out[name]["first_log_seconds"] + (DEMO_STEPS - first_step) * out[name]["steady_ms_per_step"] / 1000
        )
    eager, compiled = out["eager"], out["compiled"]
    out["steady_ratio_compiled_over_eager"] = compiled["steady_ms_per_step"] / eager["steady_ms_per_step"]
    saved_per_step = (eager["steady_ms_per_step"] - compiled["steady_ms_per_step"]) / 1000
    extra = compiled["first_log_seconds"] - eager["first_log_seconds"]
    out["warmup_extra_seconds"] = extra
    out["break_even_steps"] = round(extra / saved_per_step) if saved_per_step > 0 else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="eager/compiled pairs")
    parser.add_argument("--log-every", type=int, default=50, help="log interval (the first logged step ends warm-up)")
    parser.add_argument("--smoke", action="store_true", help="4 steps, one round, tiny data (CI)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    steps, rounds, log_every = (4, 1, 1) if args.smoke else (args.steps, args.rounds, args.log_every)
    if steps < 2 * log_every:
        parser.error(f"--steps must be at least twice --log-every ({log_every}), got {steps}")
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(rounds):
            for compiled in (False, True):
                run = train(compiled, steps, log_every, Path(scratch) / f"{index}-{compiled}", args.smoke)
                runs.append(run)
                print(
                    f"round {index} {'compiled' if compiled else 'eager'}: "
                    f"first log {run['first_log_seconds']:.1f} s, "
                    f"{run['steady_ms_per_step']:.0f} ms/step, wall {run['wall_seconds']:.1f} s",
                    flush=True,
                )
    result = {
        "benchmark": "compile",
        **environment(torch.device("cpu")),
        "setting": {"preset": PRESET, "steps": steps, "rounds": rounds, "log_every": log_every, "smoke": args.smoke},
        "runs": runs,
        "summary": summarize(runs),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"compile-{'smoke-' if args.smoke else ''}cpu.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    summary = result["summary"]
    print(
        f"compiled / eager steady step time: {summary['steady_ratio_compiled_over_eager']:.2f}; "
        f"extra warm-up {summary['warmup_extra_seconds']:.0f} s; break-even after {summary['break_even_steps']} steps; "
        f"demo's 1800 steps: eager {summary['eager']['demo_seconds']:.0f} s, "
        f"compiled {summary['compiled']['demo_seconds']:.0f} s"
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
