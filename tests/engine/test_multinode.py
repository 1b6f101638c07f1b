"""Two "nodes" on this machine: two torchrun agents meeting through a c10d rendezvous, 2 gloo
processes each, train like one process with the same global batch (README "Scaling out")."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from attmask.core.checkpoint import load_checkpoint
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from tests.conftest import free_port
from tests.engine.test_distributed import COMMON
from tests.engine.tiny import TINY, losses_by_step, tiny_config


def _torchrun_node(port: int, run_dir, overrides: tuple[str, ...]) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "2",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "attmask-test",
        "-m", "attmask.cli.main", "pretrain", "--out", str(run_dir),
    ]  # fmt: skip
    for item in overrides:
        command += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_torchrun_nodes_of_two_processes_match_one_process(tmp_path) -> None:
    port = free_port()
    overrides = (*TINY, *COMMON, "data.batch_size=2", "train.num_threads=1")  # 4 ranks x 2 = 8 images
    nodes = [_torchrun_node(port, tmp_path / "two_nodes", overrides) for _ in range(2)]
    for node in nodes:
        output, _ = node.communicate(timeout=600)
        assert node.returncode == 0, output[-2000:]
    Trainer(tiny_config(*COMMON, "data.batch_size=8"), tmp_path / "single").fit()
    single = losses_by_step(read_log(tmp_path / "single"))
    multi = losses_by_step(read_log(tmp_path / "two_nodes"))
    assert sorted(single) == sorted(multi) == [1, 2, 3, 4]
    for step in single:
        assert multi[step] == pytest.approx(single[step], rel=1e-5, abs=1e-6)
    assert load_checkpoint(tmp_path / "two_nodes" / "checkpoint.pth")["world_size"] == 4
