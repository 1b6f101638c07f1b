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


def test_killed_worker_restarts_both_nodes_from_the_last_checkpoint(tmp_path) -> None:
    """``--max-restarts 1``: rank 3 (on the second node) is SIGKILLed before step 3; both agents
    restart their workers, which resume from the checkpoint of step 2 and end with the losses of
    one uninterrupted process with the same global batch (so two nodes of two processes train like
    one process: a separate run without the kill took another 30-50 s of the suite). The restarted
    workers warn nothing: the agents do not share their rendezvous store with them
    (``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``)."""
    port, run_dir = free_port(), tmp_path / "elastic"
    overrides = (*TINY, *COMMON, "data.batch_size=2", "train.num_threads=1")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATTMASK_TEST_KILL_RANK": "3", "ATTMASK_TEST_KILL_STEP": "3"}
    env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"  # else restarted workers may meet stale addresses (README)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "2", "--max-restarts", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "attmask-elastic",
        "-m", "tests.engine.elastic_worker", "pretrain", "--out", str(run_dir),
    ]  # fmt: skip
    for item in overrides:
        command += ["--set", item]
    nodes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-3000:]
    assert any("exitcode: -9" in output for output in outputs)  # the killed worker
    assert not any("pytorch#135712" in output for output in outputs)
    rows = read_log(run_dir)
    resumes = [r for r in rows if "resumed_from" in r]
    assert len(resumes) == 1 and resumes[0]["global_step"] == 2
    Trainer(tiny_config(*COMMON, "data.batch_size=8"), tmp_path / "single").fit()
    single, elastic = losses_by_step(read_log(tmp_path / "single")), losses_by_step(rows)
    assert sorted(elastic) == [1, 2, 3, 4]
    for step in single:
        assert elastic[step] == pytest.approx(single[step], rel=1e-5, abs=1e-6)
    assert load_checkpoint(run_dir / "checkpoint.pth")["world_size"] == 4


def test_multi_node_restarts_with_a_shared_store_are_warned_about() -> None:
    from attmask.core.distributed import elastic_restart_warning

    shared = {"GROUP_WORLD_SIZE": "2", "TORCHELASTIC_MAX_RESTARTS": "1", "TORCHELASTIC_USE_AGENT_STORE": "True"}
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in elastic_restart_warning(shared)
    assert elastic_restart_warning({**shared, "TORCHELASTIC_USE_AGENT_STORE": "False"}) is None
    assert elastic_restart_warning({**shared, "TORCHELASTIC_MAX_RESTARTS": "0"}) is None
    assert elastic_restart_warning({**shared, "GROUP_WORLD_SIZE": "1"}) is None
    assert elastic_restart_warning({}) is None
