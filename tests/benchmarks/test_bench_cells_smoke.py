"""benchmarks/bench_cells.py --smoke: one cell of the cpu_v2 ablation trained in both layouts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def test_bench_cells_smoke(tmp_path) -> None:
    script = REPO_ROOT / "benchmarks" / "bench_cells.py"
    subprocess.run([sys.executable, str(script), "--smoke", "--out", str(tmp_path)], check=True, capture_output=True)
    record = json.loads((tmp_path / "cells-smoke-cpu.json").read_text())
    assert record["versions"]["torch"] and record["commit"]
    assert record["setting"]["cell"] == "attmask_high-s0-dall"
    assert [(run["layout"], run["processes"], run["threads"]) for run in record["runs"]] == [
        ("1x2", 1, 2),
        ("2x1", 2, 1),
    ]
    for run in record["runs"]:
        assert len(run["steady_steps_per_second"]) == run["processes"]
        assert run["aggregate_steps_per_second"] == pytest.approx(sum(run["steady_steps_per_second"]))
        assert 0 < run["wall_steps_per_second"] and run["wall_seconds"] > 0
    assert record["summary"]["aggregate_ratio_to_first"]["1x2"] == 1.0


def test_summary_and_bad_layout(tmp_path, capsys) -> None:
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from bench_cells import main, summarize

    def run(layout: str, rate: float) -> dict:
        return {"layout": layout, "aggregate_steps_per_second": rate, "wall_steps_per_second": rate, "wall_seconds": 1}

    found = summarize([run("1x2", 1.0), run("2x1", 1.5), run("1x2", 2.0), run("2x1", 1.8)], ["1x2", "2x1"])
    assert found["2x1"]["aggregate_steps_per_second"] == pytest.approx(1.65)
    assert found["aggregate_ratio_to_first"]["2x1"] == pytest.approx(1.65 / 1.5)
    with pytest.raises(SystemExit) as refused:
        main(["--layouts", "2", "--out", str(tmp_path)])
    assert refused.value.code == 2 and "--layouts takes PxT" in capsys.readouterr().err
