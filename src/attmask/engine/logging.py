"""Run logging: a JSONL file of metrics (rank 0) and TensorBoard when it is installed."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

LOG_NAME = "log.jsonl"


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class RunLogger:
    """Appends one JSON object per record to ``run_dir/log.jsonl``; mirrors scalars to TensorBoard.

    Args:
        run_dir: the run folder.
        enabled: False on ranks other than 0 (every call is then a no-op).
        tensorboard: write ``run_dir/tensorboard`` too when ``tensorboard`` is importable.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / LOG_NAME
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self.writer = None

    def log(self, record: dict[str, Any], step: int | None = None) -> dict[str, Any]:
        """Write one record (tensor values are converted to numbers here, the only sync)."""
        plain = {key: _plain(value) for key, value in record.items()}
        if not self.enabled:
            return plain
        with self.path.open("a") as stream:
            stream.write(json.dumps(plain) + "\n")
        if self.writer is not None and step is not None:
            for key, value in plain.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(key, value, step)
        return plain

    def close(self) -> None:
        """Flush TensorBoard."""
        if self.writer is not None:
            self.writer.close()


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run's JSONL log.

    Raises:
        ValueError: a line that is not JSON, naming the file and the line (a resumed run repairs
            a partial last line itself; other damage is the user's to fix).
    """
    path = Path(run_dir) / LOG_NAME
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {number} is not valid JSON ({error.msg}); delete or repair that "
                             "line (a cut-off last line is repaired by resuming the run)") from None
    return records
