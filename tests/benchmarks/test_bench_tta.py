"""The time-to-accuracy benchmark runs in smoke mode and writes its curve.

One recipe is trained (each costs a process start and a k-NN monitor); the presets of the others
load and build in tests/test_config.py."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_bench_tta_smoke(tmp_path) -> None:
    script = REPO_ROOT / "benchmarks" / "bench_tta.py"
    subprocess.run(
        [
            sys.executable,
            str(script),
            "--smoke",
            "--recipes",
            "demo",
            "--out",
            str(tmp_path),
            "--work",
            str(tmp_path / "runs"),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    record = json.loads((tmp_path / "tta-smoke-cpu.json").read_text())
    assert (tmp_path / "tta-smoke-cpu.png").stat().st_size > 0
    assert set(record["recipes"]) == {"demo"}
    for name, result in record["recipes"].items():
        assert result["commit"] and result["versions"]["torch"] and result["device"].startswith("cpu")
        points = result["points"]
        assert [p["epoch"] for p in points] == [0, 1], name
        assert points[1]["images_seen"] == 2 * points[0]["images_seen"] > 0
        assert 0 < points[0]["train_seconds"] < points[1]["train_seconds"]
        assert all(0 <= p[key] <= 100 for p in points for key in ("knn_top1", "knn_gap_top1", "knn_clsgap_top1"))
        assert {"knn_pixels_top1", "knn_random_init_top1"} <= set(result["baselines"])
        assert set(result["fewshot"]) == {"pretrained", "random_init", "pixels"}
        assert all(
            set(levels) == {"1", "2"} and all(0 <= v <= 100 for v in levels.values())
            for levels in result["fewshot"].values()
        )
