"""A SIGTERM stops training after the current step with its checkpoint written; the run resumes
from it exactly. Several processes stop together, even when only one of them was signalled."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from attmask.core.checkpoint import load_checkpoint
from attmask.core.stop import TrainingStopped
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from tests.engine.tiny import losses_by_step, monitored_trainer, tiny_config

#: 6 steps in one epoch, logged at steps 1, 3 and 6: where several processes agree on a stop.
GLOO = ("optim.epochs=1", "optim.warmup_epochs=0", "train.max_steps_per_epoch=6", "train.log_every_steps=3")


def _signal_during(monkeypatch: pytest.MonkeyPatch, global_step: int, rank: int = 0) -> None:
    """Make the process of ``rank`` send itself SIGTERM in the middle of step ``global_step`` (1-based)."""
    original = Trainer._optimizer_step

    def step(self, micro, epoch):
        logs = original(self, micro, epoch)
        if self.progress.global_step + 1 == global_step and self.ctx.rank == rank:
            os.kill(os.getpid(), signal.SIGTERM)
        return logs

    monkeypatch.setattr(Trainer, "_optimizer_step", step)


def test_sigterm_writes_the_checkpoint_of_the_step_and_the_rerun_resumes_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = signal.getsignal(signal.SIGTERM)
    _signal_during(monkeypatch, global_step=3)  # epoch 2 of 2, its first step: no checkpoint of it yet
    with pytest.raises(TrainingStopped) as stopped:
        monitored_trainer(tiny_config(), tmp_path / "run").fit()
    assert str(stopped.value) == (
        f"stopped by SIGTERM after step 3 (epoch 2 of 2); checkpoint written to {tmp_path / 'run' / 'checkpoint.pth'}: "
        "run the same command again to resume"
    )
    assert stopped.value.signum == signal.SIGTERM and signal.getsignal(signal.SIGTERM) is before
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pth")["progress"]["global_step"] == 3
    monkeypatch.undo()
    monitored_trainer(tiny_config(), tmp_path / "run").fit()
    monitored_trainer(tiny_config(), tmp_path / "whole").fit()
    resumed, whole = losses_by_step(read_log(tmp_path / "run")), losses_by_step(read_log(tmp_path / "whole"))
    assert sorted(resumed) == sorted(whole) == [1, 2, 3, 4]
    assert resumed == pytest.approx(whole, rel=1e-6)


def _signalled_worker(rank: int, port: int, run_dir: str, out: str) -> None:
    """One of two gloo processes; rank 1 alone signals itself in step 2, both record how they stopped."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    import torch

    from attmask.core.distributed import shutdown

    torch.set_num_threads(1)
    monkeypatch = pytest.MonkeyPatch()
    _signal_during(monkeypatch, global_step=2, rank=1)
    try:
        monitored_trainer(tiny_config(*GLOO), run_dir).fit()
        result = {"stopped": None}
    except TrainingStopped as stop:
        result = {"stopped": str(stop), "signum": stop.signum}
    finally:
        shutdown()
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


def test_processes_stop_together_at_the_next_logged_step(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    from tests.conftest import free_port

    run = tmp_path / "run"
    args = (free_port(), str(run), str(tmp_path))
    mp.start_processes(_signalled_worker, args=args, nprocs=2, join=True, start_method="spawn")
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank1["stopped"].startswith("stopped by SIGTERM after step 3 (epoch 1 of 1)"), rank1
    assert rank0["stopped"].startswith("stopped by a stop signal on another process after step 3"), rank0
    assert rank0["signum"] == rank1["signum"] == signal.SIGTERM
    saved = load_checkpoint(run / "checkpoint.pth")
    assert saved["progress"]["global_step"] == 3 and saved["world_size"] == 2  # resumed as any checkpoint
    assert sorted(losses_by_step(read_log(run))) == [1, 3]  # logged steps; none after the stop
