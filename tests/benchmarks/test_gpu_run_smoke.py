"""benchmarks/gpu_run.sh --smoke: the GPU session's four stages run end to end on CPU with tiny sizes,
each writing its results before the next starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_gpu_run_smoke(tmp_path) -> None:
    out = tmp_path / "gpu"
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
    stages = (out / "stages.txt").read_text().splitlines()
    assert [line.split()[0] for line in stages[:4]] == ["tests", "bench_step", "bench_data", "ablation"]
    assert all(" rc=0 " in line for line in stages[:4]), stages
    assert "device cpu" in stages[-1] and "torch" in (out / "environment.txt").read_text()
    assert json.loads((out / "step-smoke-cpu.json").read_text())["variants"]
    assert (out / "data-smoke-cpu.json").is_file()
    cells = sorted(p.name for p in (out / "ablation" / "cells").iterdir())
    assert "attmask_high-s0-dall.json" in cells and "block-s0-dall.json" in cells, cells
    assert "| AttMask-High |" in (out / "ablation" / "results.md").read_text()
