"""bench_cli.py measures the CLI's start-up and writes its result file."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_bench_cli_writes_medians(tmp_path) -> None:
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_cli.py"), "--runs", "1", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        cwd=REPO_ROOT,
    )
    result = json.loads((tmp_path / "cli-startup.json").read_text())
    assert set(result["commands"]) == {"attmask --help", "attmask pretrian (mistyped)", "python -c 'import torch'"}
    assert all(v["median_s"] > 0 for v in result["commands"].values()) and result["commit"]
