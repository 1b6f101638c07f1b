"""A short pretraining killed with SIGKILL at random points, including in the middle of checkpoint
writes, then resumed: it must end exactly as the uninterrupted run (every step's loss, the epoch
losses), log every step once, and leave no half-written files behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from attmask.cli.main import main
from attmask.engine.logging import read_log
from tests.conftest import REPO_ROOT
from tests.engine.tiny import TINY

SETTINGS = (*TINY, "optim.epochs=3", "train.max_steps_per_epoch=3", "train.save_every_steps=1", "train.num_threads=1")

#: Runs the CLI, SIGKILLing itself in the KILL_AT_WRITE-th atomic write: after the temporary file
#: is complete, before it is renamed over the checkpoint (the worst moment of a write).
DRIVER = """
import os, signal, sys
import attmask.core.files as files
kill_at, count, rename = int(os.environ["KILL_AT_WRITE"]), [0], files.os.replace
def replace(source, target):
    count[0] += 1
    if count[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return rename(source, target)
files.os.replace = replace
from attmask.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _arguments(run: Path) -> list[str]:
    return ["pretrain", "--out", str(run), *[a for s in SETTINGS for a in ("--set", s)]]


def _driver(run: Path, kill_at: int) -> int:
    env = {**os.environ, "KILL_AT_WRITE": str(kill_at), "PYTHONPATH": str(REPO_ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *_arguments(run)], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    return done.returncode


def _killed_at_a_random_moment(run: Path, seconds: float) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "attmask.cli.main", *_arguments(run)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(seconds)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _summary(run: Path) -> tuple[dict[int, float], list[float]]:
    rows = read_log(run)
    steps = [r["step"] for r in rows if "loss" in r and "epoch_done" not in r]
    assert len(steps) == len(set(steps)), "a step is logged twice"
    losses = {r["step"]: r["loss"] for r in rows if "loss" in r and "epoch_done" not in r}
    return losses, [r["epoch_loss"] for r in rows if r.get("epoch_done")]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict[int, float], list[float]]:
    run = tmp_path_factory.mktemp("reference") / "run"
    threads = torch.get_num_threads()
    try:
        assert main(_arguments(run)) == 0
    finally:
        torch.set_num_threads(threads)
    return _summary(run)


def test_killed_during_checkpoint_writes_and_at_random_moments_resumes_exactly(tmp_path, uninterrupted) -> None:
    run = tmp_path / "run"
    for write in (3, 2, 4):  # the n-th atomic write of each attempt (checkpoints and log repairs)
        assert _driver(run, write) == -signal.SIGKILL
        assert list(run.glob(".*.tmp")), "the kill left no temporary file: it did not hit a write"
    _killed_at_a_random_moment(run, random.Random(0).uniform(4.0, 8.0))
    threads = torch.get_num_threads()
    try:
        assert main(_arguments(run)) == 0
    finally:
        torch.set_num_threads(threads)
    assert not list(run.glob(".*.tmp")), "stale temporary files were left"
    losses, epoch_losses = _summary(run)
    reference_losses, reference_epochs = uninterrupted
    assert losses == reference_losses  # bit for bit, every step, logged once
    assert epoch_losses == reference_epochs  # epoch means over all their steps, across resumes
    resumes = [r for r in read_log(run) if "resumed_from" in r]
    assert resumes and any(r["repairs"] for r in resumes)


def test_resume_with_another_world_size_says_what_changes(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    arguments = ["pretrain", "--out", str(run), *[a for s in (*TINY, "optim.epochs=2") for a in ("--set", s)]]
    assert main(arguments) == 0
    state = torch.load(run / "checkpoint.pth", weights_only=True)
    state["world_size"], state["progress"]["epoch"] = 2, 1
    torch.save(state, run / "checkpoint.pth")
    capsys.readouterr()
    assert main(arguments) == 0
    assert (
        "resumed with 1 processes, trained with 2: the global batch and the data order change"
        in capsys.readouterr().err
    )
    assert any("world_size_changed" in r for r in read_log(run))
