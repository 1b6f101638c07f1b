"""The data benchmark runs both input paths in smoke mode and writes its record."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_bench_data_smoke(tmp_path) -> None:
    script = REPO_ROOT / "benchmarks" / "bench_data.py"
    subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(tmp_path), "--device", "cpu"],
        check=True,
        capture_output=True,
        text=True,
    )
    record = json.loads((tmp_path / "data-smoke-cpu.json").read_text())
    assert record["benchmark"] == "data" and record["versions"]["torch"] and record["commit"]
    assert record["setting"]["smoke"] and record["setting"]["source"] == "digits"
    for path in ("workers", "device"):
        (run,) = record["runs"][path]
        assert run["images"] == 3 * 8 and run["crops_per_image"] == 6  # the demo preset: 2 global + 4 local
        assert record["median_steady_images_per_second"][path] > 0
    ratio = record["median_steady_images_per_second"]["device"] / record["median_steady_images_per_second"]["workers"]
    assert abs(record["speedup_device_vs_workers"] - ratio) < 1e-9
