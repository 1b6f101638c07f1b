"""Run logging: a JSONL file of metrics (rank 0) and TensorBoard when it is installed."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from attmask.engine.trackers import TensorBoardTracker, build_trackers
from attmask.methods.monitors import collapse_warning

LOG_NAME = "log.jsonl"


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class RunLogger:
    """Appends one JSON object per record to ``run_dir/log.jsonl`` and mirrors its scalars to the
    trackers (:mod:`attmask.engine.trackers`: TensorBoard, Weights & Biases, MLflow).

    Args:
        run_dir: the run folder.
        enabled: False on ranks other than 0 (every call is then a no-op).
        loggers: ``train.loggers`` (``jsonl`` is always written; the others are trackers).
        config: the run's config as a dict (wandb's config, MLflow's parameters).
    """

    def __init__(
        self,
        run_dir: Path,
        enabled: bool = True,
        loggers: Sequence[str] = ("jsonl", "tensorboard"),
        config: dict[str, Any] | None = None,
    ) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / LOG_NAME
        self.trackers = build_trackers(list(loggers), Path(run_dir), config or {}) if enabled else []
        tensorboard = [t for t in self.trackers if isinstance(t, TensorBoardTracker)]
        self.writer = tensorboard[0].writer if tensorboard else None  # figures go there too

    def log(self, record: dict[str, Any], step: int | None = None) -> dict[str, Any]:
        """Write one record (tensor values are converted to numbers here, the only sync)."""
        plain = {key: _plain(value) for key, value in record.items()}
        if not self.enabled:
            return plain
        with self.path.open("a") as stream:
            stream.write(json.dumps(plain) + "\n")
        step = step if step is not None else plain.get("step")
        if isinstance(step, int):
            for tracker in self.trackers:
                tracker.log(plain, step)
        return plain

    def close(self) -> None:
        """Flush and close every tracker."""
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []


class CollapseWatch:
    """Once per epoch from the second on: a line, logged and (``speak``) printed, when the collapse
    monitors of a step record show the teacher's targets uniform or concentrated on a few of the
    ``num_prototypes`` prototypes (:func:`attmask.methods.monitors.collapse_warning`)."""

    def __init__(self, logger: RunLogger, num_prototypes: int, speak: bool) -> None:
        self.logger, self.num_prototypes, self.speak = logger, num_prototypes, speak
        self._warned_epoch = -1

    def __call__(self, record: dict[str, Any], epoch: int, step: int) -> None:
        """Look at one logged step ``record`` of ``epoch``."""
        if epoch < 1 or epoch == self._warned_epoch or "teacher_batch_entropy" not in record:
            return
        message = collapse_warning(record["teacher_entropy"], record["teacher_batch_entropy"], self.num_prototypes)
        if message:
            self._warned_epoch = epoch
            self.logger.log({"epoch": epoch, "step": step, "collapse_warning": message})
            if self.speak:
                tqdm.write(f"warning: {message}", file=sys.stderr)


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run's JSONL log.

    A last line without its newline that is not JSON yet (the run is writing it, or was killed
    while it did) is not a record: a report or a status read beside a running or killed run shows
    the rows written so far; resuming the run removes that line from the file.

    Raises:
        ValueError: another line that is not JSON, naming the file and the line (damage the user
            must repair).
    """
    path = Path(run_dir) / LOG_NAME
    if not path.is_file():
        return []
    text = path.read_text()
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines) and not text.endswith("\n"):
                break  # being written, or cut off
            raise ValueError(
                f"{path} line {number} is not valid JSON ({error.msg}); delete or repair that line"
            ) from None
    return records
