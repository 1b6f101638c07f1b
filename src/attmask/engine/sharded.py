"""Saving and resuming live training state as sharded checkpoints (``torch.distributed.checkpoint``).

``train.parallel=fsdp`` writes ``run_dir/checkpoint.dcp/`` (:mod:`attmask.core.dcp`): every
process writes its own shards of the student, the teacher and the AdamW state, rank 0 adds the
small ``meta.pth`` and the marker. DCP reshards on load, so a run resumes on another number of
processes, sharded or not (``train.parallel=ddp`` or one process reads the same folder whole).
The optimizer travels in DCP's name-keyed layout
(:func:`~torch.distributed.checkpoint.state_dict.get_state_dict`), which does not depend on how
the parameters are split into groups or shards.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from attmask.core.checkpoint import load_checkpoint, save_atomic
from attmask.core.dcp import (
    MARKER,
    META_NAME,
    PARTIAL_NAME,
    SHARDED_NAME,
    SafeFileSystemReader,
    single_process_quiet,
    swap_in,
)
from attmask.core.distributed import barrier, is_distributed
from attmask.core.files import write_atomic

#: Loading AdamW state: parameters without a saved state (never had a gradient) stay without one.
_WITHOUT_STATELESS = StateDictOptions(strict=False)


def save_sharded(
    run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, meta: dict[str, Any], is_main: bool = True
) -> Path:
    """Write ``run_dir/checkpoint.dcp`` from every process (a collective), atomically.

    Args:
        run_dir: the run folder (shared by all processes: one file system for all nodes).
        model: the module whose state is saved (the method: student, teacher, loss buffers).
        optimizer: over ``model``'s student parameters.
        meta: the checkpoint's other entries (progress, config, ...); written by rank 0 only.
        is_main: this process is rank 0 (or the only one).

    Returns:
        The finished folder.
    """
    partial = run_dir / PARTIAL_NAME
    if is_main and partial.is_dir():  # left by a killed save
        shutil.rmtree(partial)
    barrier()
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"method": model_state, "optimizer": optimizer_state}
    with single_process_quiet():
        dcp.save(state, checkpoint_id=partial, no_dist=not is_distributed())
    barrier()  # every shard written before the marker
    if is_main:
        save_atomic(meta, partial / META_NAME)
        write_atomic(partial / MARKER, lambda stream: stream.write(b"finished\n"))
        swap_in(run_dir)
    barrier()
    return run_dir / SHARDED_NAME


def load_sharded(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> dict:
    """Load a finished sharded checkpoint into ``model`` and ``optimizer`` (every process; reshards).

    Returns:
        Its ``meta.pth`` entries (progress, config, world size, ...).
    """
    meta = load_checkpoint(folder / META_NAME, map_location=device)
    reader = SafeFileSystemReader(folder)
    saved = reader.read_metadata().state_dict_metadata
    model_state, optimizer_state = get_state_dict(model, optimizer)  # gives every parameter a (dummy) state
    # Parameters that never had a gradient (the frozen last layer) have no AdamW state: keep it so.
    kept = {name: value for name, value in optimizer_state["state"].items() if f"optimizer.state.{name}.step" in saved}
    state = {"method": model_state, "optimizer": {**optimizer_state, "state": kept}}
    with single_process_quiet():
        dcp.load(state, storage_reader=reader, no_dist=not is_distributed())
    set_model_state_dict(model, state["method"])
    set_optimizer_state_dict(model, optimizer, state["optimizer"], options=_WITHOUT_STATELESS)
    _drop_unsaved_state(model, optimizer, set(kept))
    return meta


def load_whole(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a single-file checkpoint's full ``method`` and ``optimizer`` into ``model`` / ``optimizer``,
    sharded or not: every process reads the whole file and keeps its part.

    The optimizer may be in ``torch.optim``'s id-keyed layout (single-file checkpoints written by
    training) or the name-keyed one (``optimizer_layout: "names"``: a converted sharded checkpoint).
    """
    optimizer_state = state["optimizer"]
    if state.get("optimizer_layout") != "names":
        optimizer_state = names_layout(model, optimizer, optimizer_state)
    model_state = {k: v for k, v in state["method"].items() if not k.startswith("_student_runner.")}
    set_model_state_dict(model, model_state, options=StateDictOptions(full_state_dict=True))
    options = StateDictOptions(full_state_dict=True, strict=False)
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)
    _drop_unsaved_state(model, optimizer, set(optimizer_state["state"]))


def _drop_unsaved_state(model: nn.Module, optimizer: torch.optim.Optimizer, saved: set[str]) -> None:
    """Remove the AdamW state of parameters that had none when saved (the frozen last layer).

    ``torch.distributed.checkpoint.state_dict`` gives every parameter a state before loading (a
    step with lr 0); a parameter left with it would start its first real update at step 2 of
    AdamW's bias correction instead of step 1, unlike the uninterrupted run."""
    for name, parameter in model.named_parameters():
        if name not in saved:
            optimizer.state.pop(parameter, None)


def names_layout(model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> dict[str, Any]:
    """``torch.optim``'s id-keyed state dict (``saved``) in DCP's name-keyed layout.

    Ids number ``optimizer``'s parameters group by group, in order, as ``Optimizer.state_dict``
    does; ``optimizer`` must be built like the one that was saved (same groups, same order).
    """
    names = {id(p): name for name, p in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    state = {order[i]: value for i, value in saved["state"].items()}
    groups = [{**group, "params": [order[i] for i in group["params"]]} for group in saved["param_groups"]]
    return {"state": state, "param_groups": groups}
