"""Step benchmark: one full iBOT + AttMask optimizer step, fast path vs the original design.

In one process, interleaved A B A B over several rounds so that drift hits every variant
alike, times a full optimizer step (teacher forward, masking, student forward, loss, backward,
clipping, AdamW, EMA) of
  * ``fast``: this library's default (fused attention, student patch head on the masked tokens
    only, global-norm clipping without host syncs, fused EMA; bf16 on GPU),
  * ``reference``: the original DINO / iBOT code's costs, replicated by ``reference_design.py``
    beside this script (explicit softmax attention in every block, head on all patch tokens,
    per-parameter clipping with a host sync each, the loss read every step, EMA loop, default
    AdamW; fp16 on GPU); the library itself has only the fast path,
  * ``fast_random``: the fast path with random instead of AttMask-High masking (masking overhead),
  * ``fast_compiled`` (GPU only): the fast path with ``train.compile``,
on the same model, crops and seed. Reports median step time, images/s, peak memory (CUDA),
FLOPs of one step (``FlopCounterMode``), achieved FLOP/s and MFU (against the datasheet bf16
dense peak on GPU, a GEMM probe timed here on CPU), and checks that fast and reference give the
same losses. Writes ``benchmarks/results/step-<device>.json`` (``step-smoke-<device>.json``).

Usage: ``python benchmarks/bench_step.py [--smoke] [--out DIR] [--device cpu|cuda] [--threads N]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flops import count_flops, gemm_probe, peak_flops, synchronize  # benchmarks/flops.py, beside this script
from reference_design import build_reference_step  # benchmarks/reference_design.py, beside this script

from attmask.config import Config, load_config
from attmask.core.environment import environment
from attmask.engine.optim import build_optimizer
from attmask.engine.precision import resolve_precision
from attmask.engine.step import OptimizerStep, StepSettings, compile_backbones
from attmask.methods import PretrainingMethod, build_method

RESULTS = Path(__file__).resolve().parent / "results"
SEED, EPOCH, WEIGHT_DECAY, MOMENTUM = 0, 1, 0.04, 0.996  # epoch 1: the last layer trains


@dataclass
class Setting:
    """Model, crops and schedule of the measurement."""

    arch: str
    patch_size: int
    global_size: int
    local_size: int
    num_local: int
    batch: int
    head: tuple[int, int, int]  # out_dim (= patch_out_dim), hidden_dim, bottleneck_dim
    rounds: int
    steps_per_round: int
    warmup_steps: int
    check_steps: int
    compiled: bool
    depth: int | None = None  # None: the architecture's; 2 in smoke mode, which checks the machinery only


def setting_for(device: torch.device, smoke: bool) -> Setting:
    """ViT-S/16 on 2x224 + 10x96 on GPU; ViT-Tiny/4 on 2x32 + 4x16 on CPU (smaller head); smoke mode
    keeps 2 of the blocks (and on CPU a 4x smaller head)."""
    batch = 4 if smoke else 64
    rounds, steps, warmup, check = (1, 1, 1, 2) if smoke else (5, 3 if device.type == "cuda" else 2, 2, 3)
    depth = 2 if smoke else None
    if device.type == "cuda":
        head = (8192, 2048, 256)
        return Setting("vit_small", 16, 224, 96, 10, batch, head, rounds, steps, warmup, check, True, depth)
    head = (1024, 256, 64) if smoke else (4096, 1024, 256)
    return Setting("vit_tiny", 4, 32, 16, 4, batch, head, rounds, steps, warmup, check, False, depth)


@dataclass
class Variant:
    """One configuration under test, with its own weights, optimizer and step."""

    name: str
    config: Config
    method: PretrainingMethod
    step: OptimizerStep
    reference: bool = False


def build_variant(name: str, setting: Setting, device: torch.device, *overrides: str) -> Variant:
    """Method, AdamW and optimizer step from the benchmark setting (same weights for every seed);
    the ``reference`` variant through :func:`reference_design.build_reference_step`."""
    out_dim, hidden, bottleneck = setting.head
    config = load_config(
        None,
        [
            f"model.arch={setting.arch}",
            f"model.patch_size={setting.patch_size}",
            f"head.out_dim={out_dim}",
            f"head.patch_out_dim={out_dim}",
            f"head.hidden_dim={hidden}",
            f"head.bottleneck_dim={bottleneck}",
            *([f"model.depth={setting.depth}"] if setting.depth else []),
            *overrides,
        ],
    )
    torch.manual_seed(SEED)
    method = build_method(config, setting.global_size, setting.num_local, seed=SEED).to(device).train()
    if name == "reference":
        return Variant(name, config, method, build_reference_step(method, config, device), reference=True)
    if config.train.compile:
        compile_backbones(method)
    precision = resolve_precision(config.train.precision, device)
    optimizer = build_optimizer(method.student, device)
    settings = StepSettings(precision, config.optim.clip_grad, config.optim.freeze_last_layer_epochs)
    return Variant(name, config, method, OptimizerStep(method, optimizer, settings, device))


def make_crops(setting: Setting, device: torch.device) -> list[torch.Tensor]:
    """Random crops ``[global_1, global_2, local_1, ...]``, each ``(B, 3, S, S)``."""
    generator = torch.Generator().manual_seed(SEED)
    sizes = [setting.global_size] * 2 + [setting.local_size] * setting.num_local
    return [torch.randn(setting.batch, 3, s, s, generator=generator).to(device) for s in sizes]


def _lr(setting: Setting) -> float:
    return 5e-4 * setting.batch / 256


def _step(variant: Variant, crops: list[torch.Tensor], setting: Setting) -> None:
    variant.step([crops], EPOCH, _lr(setting), WEIGHT_DECAY, MOMENTUM)


def check_losses(variants: dict[str, Variant], crops: list[torch.Tensor], setting: Setting) -> dict[str, Any]:
    """First ``check_steps`` losses of fast and reference from identical weights and seeds.

    Clipping is off for these steps (each parameter vs the global norm: the rules differ once
    they clip). They are also the first warm-up steps of both variants.
    """
    losses: dict[str, list[float]] = {}
    for name in ("fast", "reference"):
        variant = variants[name]
        settings = dataclasses.replace(variant.step.settings, clip_grad=0.0)
        checker = type(variant.step)(variant.method, variant.step.optimizer, settings, variant.step.device)
        losses[name] = []
        for index in range(setting.check_steps):
            torch.manual_seed(SEED + index)
            variant.method.generator.manual_seed(SEED + index)
            losses[name].append(float(checker([crops], EPOCH, _lr(setting), WEIGHT_DECAY, MOMENTUM)["loss"]))
    full = all(variants[n].step.settings.precision == "fp32" for n in ("fast", "reference"))
    rtol = 1e-4 if full else 5e-2  # bf16 vs fp16 on GPU: only close
    worst = max(abs(a - b) / abs(b) for a, b in zip(losses["fast"], losses["reference"]))
    return {
        "steps": setting.check_steps,
        "clip_grad": 0.0,
        **losses,
        "max_relative_difference": worst,
        "rtol": rtol,
        "agree": worst <= rtol,
    }


def interleaved_steps(
    variants: list[Variant], crops: list[torch.Tensor], setting: Setting, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, int | None]]:
    """Per-step milliseconds over ``rounds`` rounds of A B A B ..., and peak step memory.

    Peak memory is CUDA ``max_memory_allocated`` during a variant's steps minus what was
    allocated just before them (every variant's weights and optimizer states); None on CPU.
    """
    samples: dict[str, list[float]] = {v.name: [] for v in variants}
    peaks: dict[str, int | None] = {v.name: None for v in variants}
    for _ in range(setting.rounds):
        for variant in variants:
            if device.type == "cuda":
                synchronize(device)
                resident = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
            for _ in range(setting.steps_per_round):
                synchronize(device)
                start = time.perf_counter()
                _step(variant, crops, setting)
                synchronize(device)
                samples[variant.name].append((time.perf_counter() - start) * 1e3)
            if device.type == "cuda":
                peak = torch.cuda.max_memory_allocated(device) - resident
                peaks[variant.name] = max(peaks[variant.name] or 0, peak)
    return samples, peaks


def variant_names(setting: Setting) -> dict[str, tuple[str, ...]]:
    """Config overrides of every variant."""
    fast = ("train.precision=auto",)
    names = {"fast": fast, "reference": (), "fast_random": (*fast, "masking.strategy=random")}
    if setting.compiled:
        names["fast_compiled"] = (*fast, "train.compile=true")
    return names


def _summaries(
    variants: dict[str, Variant], samples: dict, peaks: dict, flops: dict, peak: dict, setting: Setting, warmup: dict
) -> dict[str, dict[str, Any]]:
    out = {}
    for name, variant in variants.items():
        ms = sorted(samples[name])[len(samples[name]) // 2]
        achieved = flops[name] / (ms / 1e3)
        out[name] = {
            "reference_design": variant.reference,
            "compile": variant.config.train.compile,
            "precision": variant.step.settings.precision,
            "masking": variant.config.masking.strategy,
            "step_ms": ms,
            "step_ms_samples": samples[name],
            "images_per_second": setting.batch / (ms / 1e3),
            "peak_memory_bytes": peaks[name],
            "flops_per_step": flops[name],
            "achieved_flops_per_second": achieved,
            "warmup_s": warmup[name],
            "mfu": None if peak["flops_per_second"] is None else achieved / peak["flops_per_second"],
        }
    return out


def _warm_up(
    variants: dict[str, Variant], crops: list[torch.Tensor], setting: Setting, device: torch.device
) -> dict[str, float]:
    """``warmup_steps`` untimed steps per variant (compilation, allocator, GradScaler scale)."""
    seconds = {}
    for name, variant in variants.items():
        start = time.perf_counter()
        for _ in range(setting.warmup_steps):
            _step(variant, crops, setting)
        synchronize(device)
        seconds[name] = time.perf_counter() - start
    return seconds


def run(smoke: bool, device: torch.device) -> dict[str, Any]:
    """Build the variants, check the losses, warm up, count FLOPs, time; return the record."""
    setting = setting_for(device, smoke)
    variants = {
        name: build_variant(name, setting, device, *overrides) for name, overrides in variant_names(setting).items()
    }
    crops = make_crops(setting, device)
    losses = check_losses(variants, crops, setting)
    warmup = _warm_up(variants, crops, setting, device)
    flops = {
        name: count_flops(lambda v=v: _step(v, crops, setting))
        for name, v in variants.items()
        if not v.config.train.compile
    }
    if "fast_compiled" in variants:  # the same arithmetic as eager; counting through dynamo is unreliable
        flops["fast_compiled"] = flops["fast"]
    samples, peaks = interleaved_steps(list(variants.values()), crops, setting, device)
    probe = gemm_probe(device, smoke)
    peak = peak_flops(device, probe)
    summary = _summaries(variants, samples, peaks, flops, peak, setting, warmup)
    ms = {name: value["step_ms"] for name, value in summary.items()}
    return {
        "benchmark": "step",
        **environment(device),
        "setting": {
            **dataclasses.asdict(setting),
            "smoke": smoke,
            "crops": f"2x{setting.global_size} + {setting.num_local}x{setting.local_size}",
            "images_per_step": setting.batch,
        },
        "variants": summary,
        "speedup_fast_vs_reference": ms["reference"] / ms["fast"],
        "speedup_compiled_vs_reference": ms["reference"] / ms["fast_compiled"] if "fast_compiled" in ms else None,
        "masking_overhead_pct": 100 * (ms["fast"] - ms["fast_random"]) / ms["fast_random"],
        "loss_check": losses,
        "mfu_peak": peak,
        "gemm_probe": probe,
        "notes": _notes(device),
    }


def _notes(device: torch.device) -> list[str]:
    notes = [
        "flops_per_step: FlopCounterMode over one step (matmul, conv, attention; forward + "
        "backward); each variant's own work, so the fast path counts fewer FLOPs (head on masked "
        "tokens only)",
        "fast_compiled reuses the eager fast path's FLOP count",
        "masking_overhead_pct: fast (AttMask-High) vs fast_random, whole step",
    ]
    if device.type == "cpu":
        notes.append(
            "peak_memory_bytes is null on CPU (no allocator statistics); mfu is against the "
            "fp32 GEMM probe measured in this process, not a datasheet peak"
        )
    else:
        notes.append(
            "peak_memory_bytes: max_memory_allocated during the variant's steps minus the "
            "memory allocated before them (all variants' weights and optimizer states)"
        )
    return notes


def print_table(result: dict[str, Any], path: Path) -> None:
    """The markdown table of the variants and the headline ratios."""
    print(
        f"device: {result['device']}  commit: {result['commit']}  crops: {result['setting']['crops']}  "
        f"batch: {result['setting']['batch']}"
    )
    print("| variant | precision | step ms | images/s | peak MiB | GFLOP/step | TFLOP/s | MFU % |")
    print("|---|---|---|---|---|---|---|---|")
    for name, v in result["variants"].items():
        memory = "n/a" if v["peak_memory_bytes"] is None else f"{v['peak_memory_bytes'] / 2**20:.0f}"
        mfu = "n/a" if v["mfu"] is None else f"{100 * v['mfu']:.1f}"
        print(
            f"| {name} | {v['precision']} | {v['step_ms']:.1f} | {v['images_per_second']:.1f} | {memory} | "
            f"{v['flops_per_step'] / 1e9:.1f} | {v['achieved_flops_per_second'] / 1e12:.3f} | {mfu} |"
        )
    check = result["loss_check"]
    print(
        f"fast vs reference: {result['speedup_fast_vs_reference']:.2f}x faster; AttMask-High masking "
        f"overhead vs random: {result['masking_overhead_pct']:+.1f}%; losses agree: {check['agree']} "
        f"(max relative difference {check['max_relative_difference']:.2e}, rtol {check['rtol']})"
    )
    print(f"MFU against: {result['mfu_peak']['source']}")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="batch 4, one round, for CI")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU intra-op threads (0: PyTorch's default); 1 on a busy machine avoids waiting on a descheduled thread",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = run(args.smoke, device)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"step-{'smoke-' if args.smoke else ''}{device.type}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result, path)


if __name__ == "__main__":
    main()
