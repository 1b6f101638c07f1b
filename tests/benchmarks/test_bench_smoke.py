"""The core benchmark runs end to end in smoke mode and writes a complete record."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_bench_core_smoke(tmp_path) -> None:
    script = REPO_ROOT / "benchmarks" / "bench_core.py"
    subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(tmp_path)], check=True, capture_output=True, text=True
    )
    record = json.loads((tmp_path / "core-smoke-cpu.json").read_text())
    assert record["versions"]["torch"] and record["device"].startswith("cpu")
    assert set(record["mask_ms"]) == {"block", "random", "attmask_high", "attmask_low", "attmask_hint"}
    assert all(value > 0 for value in record["mask_ms"].values())
    assert record["forward_ms"]["plain"] > 0
