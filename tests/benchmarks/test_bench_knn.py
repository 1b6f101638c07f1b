"""The k-NN benchmark runs end to end in smoke mode, verifies itself and writes its record."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_bench_knn_smoke(tmp_path) -> None:
    script = REPO_ROOT / "benchmarks" / "bench_knn.py"
    subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(tmp_path), "--device", "cpu", "--threads", "1"],
        check=True,
        capture_output=True,
        text=True,
    )
    record = json.loads((tmp_path / "knn-smoke-cpu.json").read_text())
    assert (tmp_path / "knn-smoke-cpu.png").stat().st_size > 0
    assert record["benchmark"] == "knn" and record["versions"]["torch"]
    assert record["device"].startswith("cpu") and "1 thread)" in record["device"]
    assert record["setting"]["smoke"] and record["setting"]["dtype"] == "float16"
    check = record["verification"]
    assert check["passed"] and check["top1_chunked"] == check["top1_unchunked"]
    assert check["max_similarity_error_of_chunked_neighbours"] <= 1e-5
    runs = record["runs"]
    assert {run["bank_size"] for run in runs} == set(record["setting"]["bank_sizes"])
    assert any(run["unchunked"] for run in runs) and any(not run["unchunked"] for run in runs)
    assert all(run["median_seconds"] > 0 and run["peak_bytes"] >= 0 for run in runs)
    for size in record["setting"]["bank_sizes"]:  # chunking never changes the accuracy
        assert len({(run["top1"], run["top5"]) for run in runs if run["bank_size"] == size}) == 1
