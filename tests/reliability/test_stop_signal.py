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
from attmask.experiments.run_log import json_records
from tests.conftest import REPO_ROOT
from tests.engine.tiny import TINY

#: Long enough to be signalled while training; a loader worker that the group signal reaches too.
SETTINGS = (*TINY, "optim.epochs=20", "train.max_steps_per_epoch=100", "data.num_workers=1", "train.num_threads=1")


def _logged_steps(run: Path) -> list[int]:
    """Steps of the loss records logged so far (the run is writing: a torn last line is skipped)."""
    return [int(r["step"]) for r in json_records(run / "log.jsonl") if "loss" in r]


def _stop_when_logged(command: list[str], run: Path, send) -> tuple[int, str]:
    """Start ``command`` in its own process group, ``send(process)`` once step 3 is logged; returns
    (exit code, stderr)."""
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a job under a scheduler
    )
    deadline = time.monotonic() + 300
    while not [s for s in _logged_steps(run) if s >= 3] and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    send(process)
    try:
        _, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:  # e.g. processes that did not agree on the step, waiting on each other
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return process.returncode, stderr


def _stopped_step(line: str, run: Path) -> int:
    """The step the one line names, checked against the checkpoint and the log."""
    assert line.startswith("attmask pretrain: stopped by SIGTERM after step "), line
    assert line.endswith(": run the same command again to resume"), line
    step = int(line.split("after step ")[1].split(" ")[0])
    assert step >= 3 and load_checkpoint(run / "checkpoint.pth")["progress"]["global_step"] == step
    assert max(r["step"] for r in read_log(run) if "loss" in r) == step  # nothing trained past the checkpoint
    return step


def test_sigterm_to_the_process_group_stops_with_a_checkpoint_and_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    arguments = ["pretrain", "--out", str(run), *[a for s in SETTINGS for a in ("--set", s)]]
    code, stderr = _stop_when_logged(
        [sys.executable, "-m", "attmask.cli.main", *arguments], run, lambda p: os.killpg(p.pid, signal.SIGTERM)
    )
    assert code == 128 + signal.SIGTERM, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    _stopped_step(lines[0], run)


def _worker_of_rank(agent: int, rank: int) -> int:
    """The pid of torchrun agent ``agent``'s worker process of ``rank`` (Linux /proc)."""
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0") if parent == agent else []
        except (OSError, ValueError, IndexError):
            continue
        if f"RANK={rank}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no worker of rank {rank} under {agent}")


def test_torchrun_workers_stop_together_when_one_is_signalled(tmp_path: Path) -> None:
    """Of a torchrun job's 2 workers only rank 1 gets SIGTERM: both write the checkpoint of the
    same logged step (they agree there) and rank 0 alone says so, in one line."""
    run = tmp_path / "run"
    settings = (*SETTINGS[:-2], "data.num_workers=0", "train.log_every_steps=2")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "attmask.cli.main", "pretrain", "--out", str(run), *[a for s in settings for a in ("--set", s)],
    ]  # fmt: skip
    code, stderr = _stop_when_logged(command, run, lambda p: os.kill(_worker_of_rank(p.pid, 1), signal.SIGTERM))
    assert code != 0, stderr  # torchrun reports its workers' exit code 143 as a failure, in its own words
    said = [line for line in stderr.splitlines() if "attmask pretrain:" in line]
    assert len(said) == 1 and stderr.count("stopped by") == 1, stderr
    line = said[0][said[0].index("attmask pretrain:") :].replace("a stop signal on another process", "SIGTERM")
    step = _stopped_step(line, run)
    assert "stopped by a stop signal on another process" in said[0]  # rank 0 was not signalled
    assert load_checkpoint(run / "checkpoint.pth")["world_size"] == 2 and step % 2 == 0  # a logged step
