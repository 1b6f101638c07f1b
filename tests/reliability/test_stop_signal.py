"""`attmask pretrain` sent SIGTERM (to its whole process group, data-loader worker included) ends
with one line, exit code 143 and the checkpoint of its last step: no work lost, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from attmask.core.checkpoint import load_checkpoint
from attmask.engine.logging import read_log
from tests.conftest import REPO_ROOT
from tests.engine.tiny import TINY

#: Long enough to be signalled while training; a loader worker that the group signal reaches too.
SETTINGS = (*TINY, "optim.epochs=20", "train.max_steps_per_epoch=100", "data.num_workers=1", "train.num_threads=1")


def _logged_steps(run: Path) -> list[int]:
    path = run / "log.jsonl"
    text = path.read_text() if path.is_file() else ""
    return [int(line.split('"step": ')[1].split(",")[0]) for line in text.splitlines() if '"loss"' in line]


def test_sigterm_to_the_process_group_stops_with_a_checkpoint_and_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    arguments = ["pretrain", "--out", str(run), *[a for s in SETTINGS for a in ("--set", s)]]
    process = subprocess.Popen(
        [sys.executable, "-m", "attmask.cli.main", *arguments],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a job under a scheduler
    )
    deadline = time.monotonic() + 300
    while not [s for s in _logged_steps(run) if s >= 3] and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    assert lines[0].startswith("attmask pretrain: stopped by SIGTERM after step ")
    assert lines[0].endswith(": run the same command again to resume")
    step = int(lines[0].split("after step ")[1].split(" ")[0])
    assert step >= 3 and load_checkpoint(run / "checkpoint.pth")["progress"]["global_step"] == step
    assert max(r["step"] for r in read_log(run) if "loss" in r) == step  # nothing trained past the checkpoint
