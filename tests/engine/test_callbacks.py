"""The trainer calls its callbacks after every epoch and after the last one, and logs what they return."""

from __future__ import annotations

from attmask.core.callbacks import EpochEnd
from attmask.core.schedules import epoch_due
from attmask.engine.logging import read_log
from attmask.engine.trainer import Trainer
from attmask.eval.knn_monitor import KNNMonitor
from attmask.runs.monitors import build_monitors
from attmask.viz.figure_monitor import FigureMonitor
from tests.engine.tiny import tiny_config


class Recorder:
    """Remembers every event and returns a value to log."""

    def __init__(self) -> None:
        self.events: list[tuple[str, EpochEnd]] = []

    def on_epoch_end(self, event: EpochEnd) -> dict[str, float]:
        self.events.append(("epoch", event))
        return {"recorded_epoch": float(event.epoch)}

    def on_train_end(self, event: EpochEnd) -> dict[str, float]:
        self.events.append(("end", event))
        return {"recorded_end": 1.0}


def test_callbacks_see_each_epoch_and_their_values_are_logged(tmp_path) -> None:
    recorder = Recorder()
    trainer = Trainer(tiny_config("optim.epochs=2", "train.max_steps_per_epoch=1"), tmp_path, callbacks=[recorder])
    summary = trainer.fit()
    kinds = [(kind, event.epoch, event.global_step) for kind, event in recorder.events]
    assert kinds == [("epoch", 0, 1), ("epoch", 1, 2), ("end", 1, 2)]
    event = recorder.events[0][1]
    assert event.method is trainer.method and event.num_epochs == 2 and event.is_main and event.run_dir == tmp_path
    records = read_log(tmp_path)
    epochs = [r for r in records if r.get("epoch_done")]
    assert [r["recorded_epoch"] for r in epochs] == [0.0, 1.0]
    assert summary["recorded_end"] == 1.0 and any(r.get("recorded_end") == 1.0 for r in records)


def test_without_callbacks_nothing_is_evaluated(tmp_path) -> None:
    config = tiny_config(
        "optim.epochs=1", "train.max_steps_per_epoch=1", "train.knn_every_epochs=1", "train.knn_baseline=true"
    )
    summary = Trainer(config, tmp_path).fit()
    assert not any(key.startswith("knn") for record in read_log(tmp_path) for key in record)
    assert "knn_pixels_top1" not in summary


def test_build_monitors_gives_the_knn_and_figure_monitors(tmp_path) -> None:
    monitors = build_monitors(tiny_config("train.knn_baseline=true"), tmp_path)
    assert [type(m) for m in monitors] == [KNNMonitor, FigureMonitor]
    knn = monitors[0]
    first, second = knn.initial_backbone(), knn.initial_backbone()
    assert all((a == b).all() for a, b in zip(first.state_dict().values(), second.state_dict().values())), (
        "the random-init baseline is the same initialisation every time"
    )


def test_epoch_due_runs_every_n_epochs_and_after_the_last() -> None:
    assert [epoch_due(2, e, 5) for e in range(5)] == [False, True, False, True, True]
    assert not any(epoch_due(0, e, 5) for e in range(5))
    assert [epoch_due(1, e, 3) for e in range(3)] == [True, True, True]
