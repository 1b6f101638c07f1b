"""Experiment trackers beside ``log.jsonl``: TensorBoard, Weights & Biases and MLflow (``train.loggers``).

Each is optional and imported only when named. Every scalar of every log row goes to each tracker
at the row's global step, exactly as written to ``log.jsonl`` (which is always written: resume and
``attmask report`` read it). A tracker that is named but not installed is one line naming the
package to install; TensorBoard, on by default, is skipped quietly when missing.

* ``wandb``: ``wandb.init(project="attmask", name=<run folder>, dir=<run folder>, config=<config>)``;
  ``WANDB_MODE=offline`` (or ``WANDB_PROJECT`` etc.) work as usual. No login (or no network)
  is one line naming the ways out, not wandb's traceback.
* ``mlflow``: one MLflow run named after the run folder, the config as parameters; the tracking
  URI is ``MLFLOW_TRACKING_URI`` if set, else a file store in ``<run folder>/mlruns``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from attmask.core.typed_yaml import flatten

LOGGERS = ("jsonl", "tensorboard", "wandb", "mlflow")


class TrackerError(ValueError):
    """A tracker named in ``train.loggers`` cannot start (not installed, no login, bad address): one line."""


def _first_line(error: Exception, limit: int = 200) -> str:
    """The first line of a tracker's error message, cut at ``limit`` characters."""
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardTracker:
    """``run_dir/tensorboard`` event files; ``writer`` also takes the figures."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, record: dict[str, Any], step: int) -> None:
        for key, value in _numbers(record).items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """One Weights & Biases run per run folder."""

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        import wandb

        self.wandb = wandb
        try:
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "attmask"),
                name=run_dir.name,
                dir=str(run_dir),
                config=config,
                reinit="finish_previous",
            )
        except wandb.errors.Error as error:  # no login, no network, a bad project: one line, not wandb's traceback
            raise TrackerError(
                f"wandb could not start a run ({_first_line(error)}); log in (wandb login, or WANDB_API_KEY), "
                "run offline with WANDB_MODE=offline, or drop wandb from train.loggers"
            ) from None

    def log(self, record: dict[str, Any], step: int) -> None:
        self.run.log(_numbers(record), step=step)

    def close(self) -> None:
        self.run.finish()


class MLflowTracker:
    """One MLflow run per run folder, in ``MLFLOW_TRACKING_URI`` or ``run_dir/mlruns``."""

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        import mlflow

        self.mlflow = mlflow
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # a file store beside the run (MLflow >= 3.7 wants it allowed explicitly)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (run_dir / "mlruns").resolve().as_uri()
        try:
            mlflow.set_tracking_uri(uri)
            mlflow.set_experiment("attmask")
            self.run = mlflow.start_run(run_name=run_dir.name)
            mlflow.log_params({k: str(v)[:250] for k, v in flatten(config).items()})
        except mlflow.exceptions.MlflowException as error:  # a bad or unreachable tracking URI
            raise TrackerError(
                f"mlflow could not start a run in {uri} ({_first_line(error)}); fix MLFLOW_TRACKING_URI, "
                "unset it for a file store in the run folder, or drop mlflow from train.loggers"
            ) from None

    def log(self, record: dict[str, Any], step: int) -> None:
        self.mlflow.log_metrics(_numbers(record), step=step)

    def close(self) -> None:
        self.mlflow.end_run()


def build_trackers(names: list[str], run_dir: Path, config: dict[str, Any]) -> list[Any]:
    """The trackers ``names`` asks for (``jsonl`` is the log file itself, not a tracker here).

    Raises:
        ValueError: an unknown name.
        TrackerError: wandb / mlflow named but not installed, or unable to start a run (one line).
    """
    unknown = sorted(set(names) - set(LOGGERS))
    if unknown:
        raise ValueError(f"unknown train.loggers entry {unknown[0]!r}; choose from {', '.join(LOGGERS)}")
    trackers: list[Any] = []
    if "tensorboard" in names:
        try:
            trackers.append(TensorBoardTracker(run_dir))
        except ImportError:  # optional: skipped quietly when missing
            pass
    for name, cls, package in (("wandb", WandbTracker, "wandb"), ("mlflow", MLflowTracker, "mlflow-skinny")):
        if name in names:
            try:
                trackers.append(cls(run_dir, config))
            except ImportError:
                raise TrackerError(
                    f"train.loggers names {name}, which is not installed: pip install {package} "
                    "(or pip install 'attmask[trackers]')"
                ) from None
    return trackers
