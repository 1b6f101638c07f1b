"""benchmarks/gpu_run.sh --smoke: the GPU session's four stages run end to end on CPU with tiny sizes,
each writing its results before the next starts. Its bench_step and bench_data stages are those
benchmarks' smoke runs, so their records are checked here, from the one run of the script that
all tests of this file share (running them again on their own would add about 30 s to the suite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

VARIANT_KEYS = {
    "reference_design",
    "compile",
    "precision",
    "masking",
    "step_ms",
    "step_ms_samples",
    "images_per_second",
    "peak_memory_bytes",
    "flops_per_step",
    "achieved_flops_per_second",
    "warmup_s",
    "mfu",
}


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output folder of one ``gpu_run.sh --smoke`` (a failed stage fails only the tests that read
    its results; the script's stderr is shown if the script itself fails)."""
    out = tmp_path_factory.mktemp("gpu")
    env = {**os.environ, "OUT": str(out), "PY": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "benchmarks" / "gpu_run.sh"), "--smoke"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr
    return out


def _stage_log(out: Path, stage: str) -> str:
    path = out / f"{stage}.log"
    return path.read_text()[-2000:] if path.is_file() else f"no {path.name}"


def test_gpu_run_smoke(gpu_run: Path) -> None:
    out = gpu_run
    stages = (out / "stages.txt").read_text().splitlines()
    assert [line.split()[0] for line in stages[:4]] == ["tests", "bench_step", "bench_data", "ablation"]
    assert all(" rc=0 " in line for line in stages[:4]), stages
    assert "device cpu" in stages[-1] and "torch" in (out / "environment.txt").read_text()
    cells = sorted(p.name for p in (out / "ablation" / "cells").iterdir())
    assert "attmask_high-s0-dall.json" in cells and "block-s0-dall.json" in cells, cells
    assert "| AttMask-High |" in (out / "ablation" / "results.md").read_text()


def test_bench_step_smoke(gpu_run: Path) -> None:
    """The step benchmark end to end in smoke mode: complete record, fast and reference agree."""
    out = gpu_run
    assert (out / "step-smoke-cpu.json").is_file(), _stage_log(out, "bench_step")
    record = json.loads((out / "step-smoke-cpu.json").read_text())
    assert record["benchmark"] == "step" and record["device"].startswith("cpu")
    assert record["versions"]["torch"] and record["commit"] and record["date"]
    assert record["setting"]["smoke"] and record["setting"]["batch"] == 4
    variants = record["variants"]
    assert set(variants) == {"fast", "reference", "fast_random"}
    for name, variant in variants.items():
        assert set(variant) == VARIANT_KEYS, name
        assert variant["step_ms"] > 0 and variant["images_per_second"] > 0 and variant["mfu"] > 0
        assert variant["peak_memory_bytes"] is None  # no allocator statistics on CPU
    assert variants["reference"]["reference_design"] and not variants["fast"]["reference_design"]
    assert variants["fast_random"]["masking"] == "random" and variants["fast"]["masking"] == "attmask_high"
    # the student head over the masked tokens only: strictly less work than over all of them
    assert variants["fast"]["flops_per_step"] < variants["reference"]["flops_per_step"]
    check = record["loss_check"]
    assert len(check["fast"]) == len(check["reference"]) == check["steps"] >= 2
    assert check["agree"] and check["rtol"] == 1e-4 and check["max_relative_difference"] <= 1e-4
    assert record["mfu_peak"]["flops_per_second"] == record["gemm_probe"]["flops_per_second"] > 0
    for key in ("speedup_fast_vs_reference", "masking_overhead_pct"):
        assert isinstance(record[key], float)


def test_bench_data_smoke(gpu_run: Path) -> None:
    """The data benchmark runs both input paths in smoke mode and writes its record."""
    out = gpu_run
    assert (out / "data-smoke-cpu.json").is_file(), _stage_log(out, "bench_data")
    record = json.loads((out / "data-smoke-cpu.json").read_text())
    assert record["benchmark"] == "data" and record["versions"]["torch"] and record["commit"]
    assert record["setting"]["smoke"] and record["setting"]["source"] == "digits"
    for path in ("workers", "device"):
        (run,) = record["runs"][path]
        assert run["images"] == 3 * 8 and run["crops_per_image"] == 6  # the demo preset: 2 global + 4 local
        assert record["median_steady_images_per_second"][path] > 0
    ratio = record["median_steady_images_per_second"]["device"] / record["median_steady_images_per_second"]["workers"]
    assert abs(record["speedup_device_vs_workers"] - ratio) < 1e-9
