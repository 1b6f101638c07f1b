"""benchmarks/bench_compile.py --smoke: eager and compiled demo runs, timings read from their logs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def test_bench_compile_smoke(tmp_path) -> None:
    script = REPO_ROOT / "benchmarks" / "bench_compile.py"
    subprocess.run([sys.executable, str(script), "--smoke", "--out", str(tmp_path)], check=True, capture_output=True)
    record = json.loads((tmp_path / "compile-smoke-cpu.json").read_text())
    assert record["versions"]["torch"] and record["commit"]
    assert [run["compiled"] for run in record["runs"]] == [False, True]
    assert all(run["steps"] == 4 and run["steady_ms_per_step"] > 0 for run in record["runs"])
    eager, compiled = record["runs"]
    assert compiled["loss_last"] == pytest.approx(eager["loss_last"], rel=1e-3), "compiling changes no arithmetic"
    summary = record["summary"]
    assert summary["eager"]["demo_seconds"] > summary["eager"]["first_log_seconds"]
    assert summary["steady_ratio_compiled_over_eager"] > 0


def test_summary_break_even() -> None:
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from bench_compile import summarize

    def run(compiled: bool, first: float, ms: float) -> dict:
        return {
            "compiled": compiled,
            "first_log_step": 50,
            "first_log_seconds": first,
            "steady_ms_per_step": ms,
            "train_seconds": 0.0,
            "wall_seconds": 0.0,
        }

    found = summarize([run(False, 20.0, 300.0), run(True, 80.0, 200.0)])
    assert found["break_even_steps"] == 600 and found["steady_ratio_compiled_over_eager"] == pytest.approx(2 / 3)
    assert found["compiled"]["demo_seconds"] == pytest.approx(80 + 1750 * 0.2)
    assert summarize([run(False, 20.0, 300.0), run(True, 80.0, 310.0)])["break_even_steps"] is None
