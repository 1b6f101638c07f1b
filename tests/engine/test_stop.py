"""A SIGTERM stops training after the current step with its checkpoint written; the run resumes
from it exactly. (Several processes, one of them signalled: tests/reliability/test_stop_signal.py.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from attmask.core.callbacks import EpochEnd
from attmask.core.checkpoint import load_checkpoint
from attmask.core.stop import TrainingStopped
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from tests.engine.tiny import losses_by_step, monitored_trainer, tiny_config


def _signal_during(monkeypatch: pytest.MonkeyPatch, global_step: int) -> None:
    """Make the process send itself SIGTERM in the middle of step ``global_step`` (1-based)."""
    original = Trainer._optimizer_step

    def step(self, micro, epoch):
        logs = original(self, micro, epoch)
        if self.progress.global_step + 1 == global_step:
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


class _SignalAtFirstEpochEnd:
    """A monitor that gets SIGTERM while it runs at the end of epoch 1 (as a long k-NN would)."""

    def on_epoch_end(self, event: EpochEnd) -> dict[str, float]:
        if event.epoch == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return {}

    def on_train_end(self, event: EpochEnd) -> dict[str, float]:
        return {}


def test_sigterm_during_the_epoch_end_monitors_stops_before_the_next_epoch(tmp_path: Path) -> None:
    config = tiny_config()
    with pytest.raises(TrainingStopped, match=r"after step 2 \(end of epoch 1 of 2\); checkpoint written"):
        Trainer(config, tmp_path / "run", callbacks=[_SignalAtFirstEpochEnd()]).fit()
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pth")["progress"] == {
        "epoch": 1, "step": 0, "global_step": 2, "train_seconds": pytest.approx(0.0, abs=1e3)
    }  # fmt: skip
    records = read_log(tmp_path / "run")
    assert max(r["step"] for r in records if "loss" in r) == 2  # no step of epoch 2
    assert [r["step"] for r in records if "checkpoint_weight_norm" in r] == [2]  # written once, by the epoch end


class _Monitor:
    """A monitor that records the epochs it ran for; with ``kill`` the process "dies" while it runs
    at the end of epoch 1 (as a SIGKILL during a long k-NN pass would end it)."""

    def __init__(self, kill: bool = False, kill_at_end: bool = False) -> None:
        self.kill, self.kill_at_end, self.epochs, self.ends = kill, kill_at_end, [], 0

    def on_epoch_end(self, event: EpochEnd) -> dict[str, float]:
        if self.kill and event.epoch == 0:
            raise KeyboardInterrupt("killed while the monitors ran")
        self.epochs.append(event.epoch)
        return {"monitored": float(event.epoch)}

    def on_train_end(self, event: EpochEnd) -> dict[str, float]:
        if self.kill_at_end:
            raise KeyboardInterrupt("killed while the last monitors ran")
        self.ends += 1
        return {"final_score": 42.0}


def test_a_kill_during_the_epoch_end_monitors_loses_no_training_and_the_resume_runs_them(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_config(), tmp_path / "run", callbacks=[_Monitor(kill=True)]).fit()
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pth")["progress"]["global_step"] == 2  # epoch 1 kept
    resumed = _Monitor()
    Trainer(tiny_config(), tmp_path / "run", callbacks=[resumed]).fit()
    assert resumed.epochs == [0, 1]  # the missed pass first, then epoch 2's
    Trainer(tiny_config(), tmp_path / "whole", callbacks=[_Monitor()]).fit()
    records, whole = read_log(tmp_path / "run"), read_log(tmp_path / "whole")
    assert sorted(r["step"] for r in records if "loss" in r) == [1, 2, 3, 4]  # epoch 1 not trained again
    ends = [(r["epoch"], r["step"], r["monitored"]) for r in records if r.get("epoch_done")]
    assert ends == [(0, 2, 0.0), (1, 4, 1.0)]
    losses = [r["epoch_loss"] for r in records if r.get("epoch_done")]
    assert losses == pytest.approx([r["epoch_loss"] for r in whole if r.get("epoch_done")], rel=1e-6)
    again = _Monitor()
    Trainer(tiny_config(), tmp_path / "run", callbacks=[again]).fit()  # finished, every record logged
    assert again.epochs == []


def test_a_finished_run_run_again_trains_and_monitors_nothing_and_returns_its_summary(tmp_path: Path) -> None:
    """The same command run again on a finished run (a requeue, a retry loop): no step, no monitor
    pass, no log row; the summary is the one the finishing process returned. A run killed while its
    end-of-training monitors ran gets them on the next run, once."""
    first = _Monitor()
    summary = Trainer(tiny_config(), tmp_path / "run", callbacks=[first]).fit()
    assert first.ends == 1 and summary["final_score"] == 42.0 and summary["train_done"] is True
    assert summary["epoch_done"] is True and summary["monitored"] == 1.0  # the last epoch's record too
    log = (tmp_path / "run" / "log.jsonl").read_text()
    again = _Monitor()
    assert Trainer(tiny_config(), tmp_path / "run", callbacks=[again]).fit() == summary
    assert (again.epochs, again.ends) == ([], 0)
    resumed_rows = [r for r in read_log(tmp_path / "run") if "resumed_from" in r]
    assert (tmp_path / "run" / "log.jsonl").read_text().startswith(log) and len(
        resumed_rows
    ) == 1  # only the resume's row
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_config(), tmp_path / "cut", callbacks=[_Monitor(kill_at_end=True)]).fit()
    late = _Monitor()
    assert Trainer(tiny_config(), tmp_path / "cut", callbacks=[late]).fit()["final_score"] == 42.0
    assert (late.epochs, late.ends) == ([], 1)
    assert len([r for r in read_log(tmp_path / "cut") if r.get("train_done")]) == 1
