"""The step benchmark runs end to end in smoke mode: complete record, fast and reference agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


def test_bench_step_smoke(tmp_path) -> None:
    script = REPO_ROOT / "benchmarks" / "bench_step.py"
    path = os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(tmp_path), "--device", "cpu", "--threads", "1"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    record = json.loads((tmp_path / "step-smoke-cpu.json").read_text())
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
