"""The k-NN benchmark runs end to end in smoke mode, verifies itself and writes its record."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy
import torch

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


def _peak_memory():
    spec = importlib.util.spec_from_file_location("bench_knn", REPO_ROOT / "benchmarks" / "bench_knn.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_knn", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module.PeakMemory(torch.device("cpu"))


def test_cpu_peak_memory_is_never_negative_and_sees_an_allocation() -> None:
    memory = _peak_memory()
    for _ in range(20):  # memory freed after the reset read up to -300 KB before the clamp
        buffer = numpy.ones(2_000_000)
        memory.reset()
        del buffer
        assert memory.peak_bytes() >= 0
    memory.reset()
    buffer = numpy.ones(8_000_000)  # 64 MB, written, so resident
    assert memory.peak_bytes() >= 60 * 2**20
    del buffer
