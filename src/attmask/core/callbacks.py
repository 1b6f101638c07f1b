"""Callbacks: what runs beside the training loop (online k-NN, figures) without the loop knowing it.

The engine is a consumer: it imports neither evaluation nor drawing code. Whoever starts a run
(the CLI, the experiment runner, a benchmark) builds the monitors (``attmask.eval.knn_monitor``,
``attmask.viz.figure_monitor``; ``attmask.runs.monitors.build_monitors`` builds both from a
config) and hands them to :class:`attmask.engine.trainer.Trainer`, which calls them after every
epoch and once after the last one. What a callback returns is merged into the epoch's log
record. The protocol lives in the foundation so that the monitors (beside the engine, not above
it) and the engine both import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from torch import nn


@dataclass(frozen=True)
class EpochEnd:
    """The state a callback sees after an epoch.

    Attributes:
        epoch: the epoch just finished, 0-based.
        num_epochs: epochs of the whole run (``optim.epochs``).
        global_step: optimizer steps done so far.
        method: the pretraining method (an ``attmask.methods.PretrainingMethod``; its
            ``eval_backbone`` is the evaluated branch).
        run_dir: the run folder.
        is_main: True on rank 0 (figures and files are written there only).
        writer: TensorBoard ``SummaryWriter`` when that logger is on, else None.
    """

    epoch: int
    num_epochs: int
    global_step: int
    method: nn.Module
    run_dir: Path
    is_main: bool
    writer: object | None = None


class Callback(Protocol):
    """Called on every rank (collective work such as distributed feature extraction is allowed)."""

    def on_epoch_end(self, event: EpochEnd) -> dict[str, float]:
        """After each epoch, before its record is logged and the checkpoint written; the
        returned keys join the epoch's record."""
        ...

    def on_train_end(self, event: EpochEnd) -> dict[str, float]:
        """Once after the last epoch; the returned keys are logged as one record (empty: none)."""
        ...
