"""Core benchmark: cost of mask generation and of the [CLS]-row attention.

Measures, in one process, the median time of
  * each masking strategy for one view (B images, a 14x14 grid),
  * a teacher forward pass with and without ``return_cls_attention``,
and reports mask generation as a percentage of that forward pass. Writes
``benchmarks/results/core-<device>.json`` with the device, library versions and git commit.

Usage: ``python benchmarks/bench_core.py [--smoke] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils import benchmark

from attmask.core.environment import environment
from attmask.masking import MaskingConfig, build_masking
from attmask.models import build_vit

RESULTS = Path(__file__).resolve().parent / "results"


def _median_ms(stmt: str, env: dict, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt=stmt, globals=env, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def _interleaved_ms(stmts: list[str], env: dict, min_run_time: float, rounds: int) -> list[float]:
    """Median over ``rounds`` of A B A B ... measurements, so drift hits every variant alike."""
    samples: list[list[float]] = [[] for _ in stmts]
    for _ in range(rounds):
        for index, stmt in enumerate(stmts):
            samples[index].append(_median_ms(stmt, env, min_run_time))
    return [sorted(values)[len(values) // 2] for values in samples]


def run(smoke: bool, device: torch.device) -> dict:
    """Run all measurements and return the result record."""
    min_time = 0.01 if smoke else 0.5
    batch = 4 if smoke else 64
    settings = {"img_size": 32, "patch_size": 4} if device.type == "cpu" else {}
    arch = "vit_tiny" if device.type == "cpu" else "vit_small"
    model = build_vit(arch, **settings).to(device).eval()
    size = model.img_size
    images = torch.randn(batch, 3, size, size, device=device)
    env = {"model": model, "images": images, "torch": torch}
    with torch.no_grad():
        plain, with_attention = _interleaved_ms(
            ["model(images)", "model(images, return_cls_attention=True)"], env, min_time, rounds=1 if smoke else 7
        )
        scores = model(images, return_cls_attention=True).cls_attention.mean(1)
    grid = model.grid_size
    masking = {}
    for name in ("block", "random", "attmask_high", "attmask_low", "attmask_hint"):
        strategy = build_masking(MaskingConfig(strategy=name, probability=1.0))
        env.update(strategy=strategy, scores=scores, grid=grid, g=torch.Generator().manual_seed(0))
        masking[name] = _median_ms("strategy(scores.shape[0], grid, scores, g)", env, min_time)
    return {
        "benchmark": "core",
        **environment(device),
        "setting": {
            "arch": arch,
            "img_size": size,
            "patch_size": model.patch_size,
            "batch": batch,
            "grid": list(grid),
            "smoke": smoke,
        },
        "forward_ms": {"plain": plain, "with_cls_attention": with_attention},
        "cls_attention_overhead_pct": 100 * (with_attention - plain) / plain,
        "mask_ms": masking,
        "mask_pct_of_forward": {name: 100 * value / plain for name, value in masking.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one quick pass, for CI")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    result = run(args.smoke, torch.device(args.device))
    args.out.mkdir(parents=True, exist_ok=True)
    kind = "smoke-" if args.smoke else ""
    path = args.out / f"core-{kind}{torch.device(args.device).type}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    forward = result["forward_ms"]
    print(f"device: {result['device']}  commit: {result['commit']}  setting: {result['setting']}")
    print(
        f"forward {forward['plain']:.2f} ms, with CLS attention {forward['with_cls_attention']:.2f} ms "
        f"({result['cls_attention_overhead_pct']:+.1f}%)"
    )
    print("| strategy | ms per view | % of a teacher forward |\n|---|---|---|")
    for name, value in result["mask_ms"].items():
        print(f"| {name} | {value:.3f} | {result['mask_pct_of_forward'][name]:.2f} |")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
