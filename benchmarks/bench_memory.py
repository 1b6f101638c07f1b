"""Peak memory per process of iBOT (student + EMA teacher + AdamW) under DDP and FSDP2.

For ViT-S/16, ViT-B/16 and ViT-L/16 (iBOT's heads: 8192 prototypes, shared [CLS] / patch head),
each mode is run on 2 gloo processes on the CPU: build, wrap or shard, then 3 optimizer steps
(the last layer unfrozen, so every parameter has an AdamW state) on 2 random images of 64 px per
process (no local crops), so that weights, gradients and optimizer state dominate, not
activations. Measured per process: the peak resident set size (``ru_maxrss``), and that peak minus
the RSS before the model was built (the interpreter and torch's libraries). Beside them, the
analytic bytes per process: fp32 student + teacher weights, student gradients and AdamW's two
moments, divided by the number of processes under FSDP (DDP also keeps a gradient bucket copy,
about the student's size again).

    python benchmarks/bench_memory.py            # writes benchmarks/results/memory-cpu.json
    python benchmarks/bench_memory.py --smoke    # a 2-block ViT-Ti, for CI
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from attmask.config import load_config
from attmask.core.distributed import init_distributed, shutdown
from attmask.core.environment import environment
from attmask.engine.parallel import parallelize
from attmask.engine.step import configured_step
from attmask.methods import build_method
from attmask.viz.render import plt, save_figure

RESULTS = Path(__file__).resolve().parent / "results"
ARCHES = {"vit_small": "ViT-S/16", "vit_base": "ViT-B/16", "vit_large": "ViT-L/16"}
IBOT_HEAD = ("head.out_dim=8192", "head.patch_out_dim=8192", "head.hidden_dim=2048", "head.bottleneck_dim=256")
SMOKE = ("model.depth=2", "head.out_dim=64", "head.patch_out_dim=64", "head.hidden_dim=64", "head.bottleneck_dim=32")
IMAGE, BATCH, STEPS, WORLD = 64, 2, 3, 2


def _rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def free_port() -> int:
    """A free TCP port on localhost for the gloo rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _worker(rank: int, port: int, arch: str, mode: str, smoke: bool, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    before = _current_rss_mib()
    overrides = [f"model.arch={arch}", "model.patch_size=16", "model.drop_path_rate=0.0", "train.precision=fp32"]
    overrides += [*SMOKE] if smoke else [*IBOT_HEAD]
    config = load_config(None, [*overrides, "masking.strategy=attmask_high", "masking.probability=1.0"])
    torch.manual_seed(0)
    method = build_method(config, IMAGE, 0)
    student = sum(p.numel() for p in method.student.parameters())
    teacher = sum(p.numel() for p in method.teacher.parameters())
    runner = parallelize(method, ctx, mode, "fp32")
    step = configured_step(config, method, "fp32", ctx.device, runner)
    generator = torch.Generator().manual_seed(rank)
    started = time.perf_counter()
    for _ in range(STEPS):
        crops = [torch.randn(BATCH, 3, IMAGE, IMAGE, generator=generator) for _ in range(2)]
        step([crops], epoch=1, lr=1e-4, weight_decay=0.04, momentum=0.996)
    seconds = (time.perf_counter() - started) / STEPS
    peak = _rss_mib()
    shards = WORLD if mode == "fsdp" else 1
    analytic = 4 * (student * 4 + teacher) / shards / 2**20  # weights s+t, grads, 2 AdamW moments
    record = {
        "arch": ARCHES.get(arch, arch),
        "mode": mode,
        "rank": rank,
        "student_params": student,
        "teacher_params": teacher,
        "peak_rss_mib": round(peak, 1),
        "peak_minus_start_mib": round(peak - before, 1),
        "analytic_mib": round(analytic, 1),
        "seconds_per_step": round(seconds, 3),
    }
    Path(out, f"{arch}-{mode}-{rank}.json").write_text(json.dumps(record))
    shutdown()


def measure(arch: str, mode: str, smoke: bool, scratch: Path) -> dict:
    """Run one (architecture, mode) on 2 gloo processes; the larger of the two ranks' records."""
    mp.start_processes(
        _worker, args=(free_port(), arch, mode, smoke, str(scratch)), nprocs=WORLD, join=True, start_method="spawn"
    )
    records = [json.loads(Path(scratch, f"{arch}-{mode}-{rank}.json").read_text()) for rank in range(WORLD)]
    return max(records, key=lambda record: record["peak_rss_mib"])


def table(rows: list[dict]) -> str:
    """The README's Markdown table."""
    lines = [
        "| model | parallel | params (student + teacher) | peak RSS / process | peak - start | analytic |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        params = (row["student_params"] + row["teacher_params"]) / 1e6
        lines.append(
            f"| {row['arch']} | {row['mode']} | {params:.0f} M | {row['peak_rss_mib'] / 1024:.2f} GiB | "
            f"{row['peak_minus_start_mib'] / 1024:.2f} GiB | {row['analytic_mib'] / 1024:.2f} GiB |"
        )
    return "\n".join(lines)


def draw(record: dict, path: Path) -> Path:
    """Bars per model: peak RSS per process (DDP, FSDP) and the analytic bytes beside them."""
    rows, env = record["rows"], record["environment"]
    arches = list(dict.fromkeys(row["arch"] for row in rows))
    figure, axis = plt.subplots(figsize=(8, 3.8))
    width = 0.2
    bars = (
        ("ddp", "peak_rss_mib", "DDP peak RSS", "#4c72b0", None),
        ("fsdp", "peak_rss_mib", "FSDP peak RSS", "#dd8452", None),
    )
    bars += (
        ("ddp", "analytic_mib", "DDP analytic", "#4c72b0", "//"),
        ("fsdp", "analytic_mib", "FSDP analytic", "#dd8452", "//"),
    )
    for offset, (mode, key, label, colour, hatch) in enumerate(bars):
        values = [next(r[key] for r in rows if r["arch"] == arch and r["mode"] == mode) / 1024 for arch in arches]
        positions = [index + (offset - 1.5) * width for index in range(len(arches))]
        fill = "white" if hatch else colour
        axis.bar(positions, values, width, label=label, color=fill, edgecolor=colour, hatch=hatch)
        for x, value in zip(positions, values):
            axis.text(x, value, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
    axis.set_xticks(range(len(arches)), arches)
    axis.set_ylabel("GiB per process")
    setting = record["setting"]
    axis.set_title(
        f"iBOT student + teacher + AdamW, {setting['processes']} gloo processes, "
        f"commit {env['commit'][:7]}, {env['device']}",
        fontsize=8,
    )
    axis.legend(fontsize=7, ncol=2, frameon=False)
    return save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a 2-block ViT-Ti only (CI)")
    parser.add_argument("--out", default=str(RESULTS), help="folder of the JSON record")
    parser.add_argument("--arch", action="append", help="only these architectures (repeatable)")
    parser.add_argument("--draw", action="store_true", help="only redraw the PNG from the JSON record")
    args = parser.parse_args(argv)
    name = "memory-smoke-cpu" if args.smoke else "memory-cpu"
    if args.draw:
        print(draw(json.loads((Path(args.out) / f"{name}.json").read_text()), Path(args.out) / f"{name}.png"))
        return 0
    arches = ["vit_tiny"] if args.smoke else (args.arch or list(ARCHES))
    out = Path(args.out)
    scratch = out / ".memory_scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for arch in arches:
        for mode in ("ddp", "fsdp"):
            rows.append(measure(arch, mode, args.smoke, scratch))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            record = {
                "benchmark": "memory",
                "setting": {"processes": WORLD, "image": IMAGE, "batch_per_process": BATCH, "steps": STEPS},
                "smoke": args.smoke,
                "note": "seconds_per_step is not a speed claim: memory runs may share the cores with other work",
                "environment": environment(torch.device("cpu")),
                "rows": rows,
            }
            (out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")  # partial results as they land
    for path in scratch.iterdir():
        path.unlink()
    scratch.rmdir()
    draw(record, out / f"{name}.png")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
