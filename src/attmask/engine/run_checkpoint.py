"""A run's checkpoint in the format its ``train.parallel`` asks for, and every format read back.

``ddp`` (and single-process runs): rank 0 writes ``checkpoint.pth`` (one file, atomic).
``fsdp``: every process writes its shards into ``checkpoint.dcp/`` (:mod:`attmask.engine.sharded`).
Whichever is written last replaces the other, so a run may switch ``train.parallel`` between
resumes; resuming reads either into a sharded or a whole model. A run folder without a
checkpoint is started (:func:`start_run_dir`), one with a checkpoint resumed (:func:`resume_run`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attmask.config import Config, save_config, to_dict
from attmask.core.checkpoint import CHECKPOINT_NAME, save_atomic
from attmask.core.dcp import remove_sharded
from attmask.engine.parallel import is_sharded
from attmask.engine.resume import Progress, drop_rows_after, read_resumable, resume_record, tidy_run_dir
from attmask.engine.sharded import load_sharded, load_whole, save_sharded
from attmask.methods import PretrainingMethod


def write_checkpoint(
    run_dir: Path,
    sharded: bool,
    method: PretrainingMethod,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
    is_main: bool,
) -> Path:
    """Write the run's checkpoint (called by every process: a sharded save is a collective).

    Args:
        run_dir: the run folder.
        sharded: ``checkpoint.dcp/`` (``train.parallel=fsdp``) rather than ``checkpoint.pth``.
        method: its ``state_dict`` is saved.
        optimizer: its state is saved.
        meta: the other entries (format, progress, config, ...).
        is_main: rank 0 (writes the single file, removes the other format's checkpoint).

    Returns:
        The path written.
    """
    if sharded:
        path = save_sharded(run_dir, method, optimizer, meta, is_main)
        if is_main:
            (run_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
        return path
    path = run_dir / CHECKPOINT_NAME
    if is_main:
        save_atomic({**meta, "method": method.state_dict(), "optimizer": optimizer.state_dict()}, path)
        remove_sharded(run_dir)
    return path


def keep_copy(path: Path, epoch: int) -> Path:
    """Copy the checkpoint at ``path`` to ``checkpoint_epochNNNN.pth`` (or ``.dcp/``) beside it (rank 0)."""
    suffix = ".dcp" if path.is_dir() else ".pth"
    kept = path.parent / f"checkpoint_epoch{epoch:04d}{suffix}"
    if path.is_dir():
        copying = kept.with_name(kept.name + ".partial")
        shutil.rmtree(copying, ignore_errors=True)
        shutil.copytree(path, copying)
        shutil.rmtree(kept, ignore_errors=True)
        copying.rename(kept)
    else:
        staging = kept.with_name(f".{kept.name}.tmp")
        shutil.copyfile(path, staging)
        staging.replace(kept)
    return kept


def restore(path: Path, state: dict[str, Any], method: PretrainingMethod, optimizer: torch.optim.Optimizer) -> None:
    """Load the weights and optimizer state of the checkpoint at ``path`` (every process).

    Args:
        path: ``checkpoint.pth`` or a finished ``checkpoint.dcp/``.
        state: what was read of it already: the whole file, or the folder's ``meta.pth``.
        method: sharded (FSDP) or not.
        optimizer: built over ``method.student``.
    """
    device = next(method.parameters()).device
    if path.is_dir():
        load_sharded(path, method, optimizer, device)
    elif is_sharded(method.student) or state.get("optimizer_layout") == "names":
        load_whole(method, optimizer, state)
    else:
        method.load_state_dict(state["method"])
        optimizer.load_state_dict(state["optimizer"])


def start_run_dir(run_dir: Path, config: Config) -> None:
    """Start a run folder that has no checkpoint (rank 0): stale temporaries removed, the folder
    made, ``config.yaml`` written, log rows of an earlier start killed before its first checkpoint
    dropped."""
    tidy_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    drop_rows_after(run_dir, 0)


@dataclass(frozen=True)
class Resumed:
    """Where a resumed run goes on from, besides the weights, optimizer and scaler restored in place.

    Attributes:
        progress: position in the run.
        epoch_loss_sum: sum of the losses of the current epoch's steps done so far.
        finished_epoch_loss: mean loss of the last finished epoch (None: none finished, or an
            older checkpoint).
        record: the resume's log row (repairs, dropped rows, changed settings); empty except on rank 0.
    """

    progress: Progress
    epoch_loss_sum: float
    finished_epoch_loss: float | None
    record: dict[str, Any]


def resume_run(
    path: Path,
    config: Config,
    allow_change: bool,
    train: tuple[PretrainingMethod, torch.optim.Optimizer, torch.amp.GradScaler],
    notes: list[str],
    world_size: int,
    is_main: bool,
) -> Resumed:
    """Resume from the checkpoint at ``path`` (every process): check its settings against
    ``config`` (:func:`~attmask.engine.resume.read_resumable`), tidy the run folder (rank 0),
    restore ``train`` = (method, optimizer, scaler) in place, and rewrite ``config.yaml`` when
    an allowed change of settings was made (rank 0).

    Args:
        notes: repairs made already (of a killed sharded save), for the log row.

    Raises:
        TrainingError: as :func:`~attmask.engine.resume.read_resumable`.
    """
    method, optimizer, scaler = train
    device = next(method.parameters()).device
    state, changes = read_resumable(path, device, to_dict(config), allow_change)
    notes = notes + (tidy_run_dir(path.parent) if is_main else [])
    restore(path, state, method, optimizer)
    if state["scaler"]:  # empty: saved without fp16 (or converted from such an original run)
        scaler.load_state_dict(state["scaler"])
    record: dict[str, Any] = {}
    if is_main:
        record = resume_record(state, path, notes, changes, world_size)
        if changes:
            save_config(config, path.parent / "config.yaml")
    return Resumed(
        Progress(**state["progress"]), state.get("epoch_loss_sum", 0.0), state.get("finished_epoch_loss"), record
    )
