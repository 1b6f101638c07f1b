"""Whole training checkpoints of the original DINO, iBOT and AttMask code, as this project's run checkpoint.

The original ``main_dino.py`` / ``main_ibot.py`` / ``main_attmask.py`` save ``{"student", "teacher",
"optimizer", "epoch", "args", "dino_loss" | "ibot_loss", ["fp16_scaler"]}`` with DDP's ``module.``
prefix on the student. :func:`convert_original_checkpoint` maps every piece that has a slot here:

* weights of student and teacher (backbone and head; ``masked_embed`` -> ``mask_token``,
  ``last_layer.weight_g/_v`` -> the weight-norm parametrization's ``original0/1``; a shared
  ``last_layer2`` is the same tensor as ``last_layer``);
* the loss centres (``center`` -> ``loss.center.center``, ``center2`` -> ``loss.patch_center.center``);
* AdamW's moments and step counts, matched by parameter name (the original's parameter order is
  rebuilt from its state dict: parameters in registration order, shared tensors once, frozen
  ``weight_g`` left out when the optimizer holds one fewer); when the counts do not fit, the
  optimizer starts fresh and the result says so;
* the epoch, so the schedules continue where the original stopped.

The result is written as ``RUN/checkpoint.pth`` and ``RUN/config.yaml``; ``attmask pretrain --out RUN``
then continues the pretraining.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from attmask.config import Config, save_config, to_dict
from attmask.core.checkpoint import CHECKPOINT_NAME, FORMAT, save_atomic
from attmask.engine.data import crop_config
from attmask.engine.optim import build_optimizer
from attmask.methods import PretrainingMethod, build_method, original_numerics
from attmask.models.checkpoints import read_checkpoint

_RENAMES = (
    ("backbone.masked_embed", "backbone.mask_token"),
    ("last_layer.weight_g", "last_layer.parametrizations.weight.original0"),
    ("last_layer.weight_v", "last_layer.parametrizations.weight.original1"),
)
_LOSS_KEYS = {
    "ibot_loss": {"center": "loss.center.center", "center2": "loss.patch_center.center"},
    "dino_loss": {"center": "loss.center.center"},
}


@dataclass
class ConvertedCheckpoint:
    """What :func:`convert_original_checkpoint` made.

    Attributes:
        path: the written ``checkpoint.pth``.
        epoch: epochs the original had completed (the run continues from there).
        optimizer_mapped: AdamW state carried over (False: it starts fresh).
        notes: one line per piece that had no slot (dropped on purpose or left fresh).
    """

    path: Path
    epoch: int
    optimizer_mapped: bool
    notes: list[str]


def original_names(state: dict[str, torch.Tensor]) -> list[str]:
    """Parameter names of an original state dict in ``named_parameters`` order: DDP's ``module.``
    removed, a tensor shared under two names (iBOT's ``last_layer2``) listed once."""
    names, seen = [], set()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        identity = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if identity in seen and value.numel() > 0:
            continue
        seen.add(identity)
        names.append(key.removeprefix("module."))
    return names


def project_name(original: str) -> str:
    """This project's name for an original parameter name (``module.`` already removed)."""
    for old, new in _RENAMES:
        if original.endswith(old) or f"{old}." in original:
            return original.replace(old, new)
    return original


def _tensor(state: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """``state[name]``, with or without DDP's ``module.`` prefix."""
    return state[name] if name in state else state[f"module.{name}"]


def _branch_state(
    method: PretrainingMethod, state: dict[str, torch.Tensor], branch: str, notes: list[str]
) -> dict[str, torch.Tensor]:
    """``state`` (one original network) renamed to ``branch.*`` keys of ``method``."""
    expected = {k for k in method.state_dict() if k.startswith(f"{branch}.")}
    result: dict[str, torch.Tensor] = {}
    for name in original_names(state):
        key = f"{branch}.{project_name(name)}"
        value = _tensor(state, name)
        if key not in expected:
            if "last_layer2" in name:
                raise ValueError(
                    f"the original {branch} has patch prototypes of its own ({name}: "
                    "shared_head false); this project's iBOT shares them or uses a whole "
                    "second head, so they cannot be carried over"
                )
            notes.append(f"{branch}: {name} has no slot here (dropped)")
            continue
        target = method.state_dict()[key]
        result[key] = value.reshape(target.shape) if value.numel() == target.numel() else value
    return result


def _optimizer_state(
    checkpoint: dict, method: PretrainingMethod, optimizer: torch.optim.Optimizer, notes: list[str]
) -> dict | None:
    """The optimizer's state dict with the original's AdamW moments by name, or None."""
    saved = checkpoint.get("optimizer")
    if not isinstance(saved, dict) or "state" not in saved or "param_groups" not in saved:
        notes.append("no optimizer state in the original checkpoint: AdamW starts fresh")
        return None
    names = original_names(checkpoint["student"])
    trainable = sum(len(group["params"]) for group in saved["param_groups"])
    if len(names) == trainable + 1:  # the frozen weight_g of norm_last_layer is not optimised
        names = [n for n in names if not n.endswith("last_layer.weight_g")]
    if len(names) != trainable:
        notes.append(
            f"the original optimizer holds {trainable} parameters, its student {len(names)}: AdamW starts fresh"
        )
        return None
    # get_params_groups: [decayed, not decayed], each in named_parameters order
    decayed = [n for n in names if not (n.endswith(".bias") or _tensor(checkpoint["student"], n).ndim == 1)]
    ordered = decayed + [n for n in names if n not in set(decayed)]
    index_of = {
        project_name(name): saved_index
        for name, saved_index in zip(ordered, [i for group in saved["param_groups"] for i in group["params"]])
    }
    ours = optimizer.state_dict()
    own_names = {id(p): n for n, p in method.student.named_parameters()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {}
    for our_index, parameter in zip([i for g in ours["param_groups"] for i in g["params"]], params):
        saved_index = index_of.get(own_names[id(parameter)])
        if saved_index in saved["state"]:
            state[our_index] = saved["state"][saved_index]
    return {"state": state, "param_groups": ours["param_groups"]}


def _load_method_state(
    method: PretrainingMethod, checkpoint: dict, source: str | Path, name: str, notes: list[str]
) -> None:
    """Load the original's student, teacher and loss buffers (centres) into ``method``, in place.

    Raises:
        ValueError: the weights do not fit ``method`` (one line).
    """
    state = {
        **_branch_state(method, checkpoint["student"], "student", notes),
        **_branch_state(method, checkpoint["teacher"], "teacher", notes),
    }
    for loss_key, mapping in _LOSS_KEYS.items():
        for old, new in mapping.items():
            if isinstance(checkpoint.get(loss_key), dict) and old in checkpoint[loss_key]:
                state[new] = checkpoint[loss_key][old]
    missing = [k for k in method.state_dict() if k not in state]
    for key in [k for k in missing if k.endswith("backbone.mask_token")]:  # DINO has none: keep the fresh one
        state[key] = method.state_dict()[key]
        notes.append(f"{key}: not in the original (DINO), kept at its initial value")
    try:
        method.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"{source} does not fit the {name} method of this config: {str(error).strip().splitlines()[-1].strip()}"
        ) from None


def convert_original_checkpoint(source: str | Path, config: Config, out_dir: str | Path) -> ConvertedCheckpoint:
    """Write ``out_dir/checkpoint.pth`` (and ``config.yaml``) from an original training checkpoint.

    Args:
        source: ``checkpoint.pth`` of the original DINO / iBOT / AttMask code.
        config: this project's config of the same architecture and method (``ibot`` or ``dino``).
        out_dir: a new run folder; ``attmask pretrain --out out_dir`` continues from it.

    Raises:
        ValueError: not such a checkpoint, or weights that do not fit ``config`` (one line).
    """
    checkpoint = read_checkpoint(source)
    if not isinstance(checkpoint, dict) or not {"student", "teacher"} <= set(checkpoint):
        raise ValueError(
            f"{source} is not a training checkpoint of the original DINO / iBOT / AttMask "
            "code (no student and teacher); `attmask export` reads released backbones"
        )
    crops = crop_config(config.data)
    method = build_method(config, crops.global_size, crops.num_local)
    notes: list[str] = []
    _load_method_state(method, checkpoint, source, config.train.method, notes)
    optimizer = build_optimizer(
        method.student,
        torch.device("cpu"),
        config.optim.betas,
        config.optim.last_layer_lr_scale,
        original_numerics(config),
    )
    optimizer_state = _optimizer_state(checkpoint, method, optimizer, notes)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    epoch = int(checkpoint.get("epoch", 0))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, out_dir / "config.yaml")
    progress = {"epoch": epoch, "step": 0, "global_step": 0, "train_seconds": 0.0}
    path = save_atomic(
        {
            "format": FORMAT,
            "version": 1,
            "progress": progress,
            "evaluated_branch": method.evaluated_branch,
            "method": method.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": checkpoint.get("fp16_scaler") or {},
            "config": to_dict(config),
            "converted_from": str(source),
        },
        out_dir / CHECKPOINT_NAME,
    )
    return ConvertedCheckpoint(path, epoch, optimizer_state is not None, notes)


__all__ = ["ConvertedCheckpoint", "convert_original_checkpoint", "original_names", "project_name"]
