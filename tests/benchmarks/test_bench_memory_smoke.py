"""The memory benchmark runs DDP and FSDP on 2 gloo processes in smoke mode and writes its record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def test_bench_memory_smoke(tmp_path) -> None:
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_memory.py"
    done = subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "memory-smoke-cpu.json").read_text())
    rows = {row["mode"]: row for row in record["rows"]}
    assert sorted(rows) == ["ddp", "fsdp"] and record["environment"]["commit"]
    assert rows["fsdp"]["analytic_mib"] == pytest.approx(rows["ddp"]["analytic_mib"] / 2, abs=0.1)  # 2 shards
    assert all(row["peak_rss_mib"] > row["peak_minus_start_mib"] > 0 for row in rows.values())
    assert "| vit_tiny | fsdp |" in done.stdout and not (tmp_path / ".memory_scratch").exists()
    assert (tmp_path / "memory-smoke-cpu.png").stat().st_size > 10_000
