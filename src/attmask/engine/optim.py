"""AdamW with per-group weight decay and per-iteration schedules (iBOT / DINO recipe)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.distributed.tensor import DTensor

from attmask.config import OptimConfig
from attmask.core.distributed import all_reduce_sum, full_value
from attmask.core.schedules import cosine_schedule
from attmask.heads import last_layer_parameters

_NO_DECAY_NAMES = ("cls_token", "pos_embed", "mask_token")


def parameter_groups(model: nn.Module, last_layer_lr_scale: float = 1.0, decay_tokens: bool = False) -> list[dict]:
    """Split trainable parameters: weight decay on weights, none on biases, norms and tokens.

    ``decay_tokens=True`` decays ``cls_token``, ``pos_embed`` and ``mask_token`` too, as the
    original DINO / iBOT ``get_params_groups`` does (it exempts only biases and 1-D parameters;
    ``train.fidelity=original``). Decayed groups come first, as there.

    With ``last_layer_lr_scale != 1`` the parameters of the heads' prototype layers
    (:func:`attmask.heads.last_layer_parameters`) form groups of their own whose lr is the schedule's times that
    scale (``lr_scale``, read by :func:`set_hyperparameters`, the key timm's layer decay uses).
    """
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {(True, 1.0): [], (False, 1.0): []}
    prototypes = {id(p) for p in last_layer_parameters(model)}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        skip = (
            parameter.ndim <= 1
            or name.endswith(".bias")
            or (not decay_tokens and any(token in name for token in _NO_DECAY_NAMES))
        )
        scale = last_layer_lr_scale if id(parameter) in prototypes else 1.0
        groups.setdefault((not skip, scale), []).append(parameter)
    result = []
    for (decayed, scale), parameters in groups.items():
        if not parameters and scale != 1.0:
            continue
        group: dict = {"params": parameters, "apply_weight_decay": decayed}
        if not decayed:
            group["weight_decay"] = 0.0
        if scale != 1.0:
            group["lr_scale"] = scale
        result.append(group)
    return result


def build_optimizer(
    model: nn.Module,
    device: torch.device,
    betas: tuple[float, float] = (0.9, 0.999),
    last_layer_lr_scale: float = 1.0,
    decay_tokens: bool = False,
) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups` (fused kernel on CUDA, foreach elsewhere)."""
    groups = parameter_groups(model, last_layer_lr_scale, decay_tokens)
    fused = device.type == "cuda"
    return torch.optim.AdamW(
        groups, lr=0.0, weight_decay=0.0, betas=betas, fused=fused, foreach=None if fused else True
    )


def clip_global_norm(parameters: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale all gradients so that their global L2 norm is at most ``max_norm`` (no host sync).

    Args:
        parameters: parameters with gradients.
        max_norm: threshold; ``<= 0`` only measures.

    Returns:
        The global gradient norm before clipping (0-d tensor on the gradients' device).
    """
    limit = max_norm if max_norm > 0 else float("inf")
    return full_value(torch.nn.utils.clip_grad_norm_(parameters, limit, foreach=True)).detach()  # FSDP: a DTensor


def clip_per_parameter(parameters: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """DINO / iBOT's ``utils.clip_gradients``: each parameter's own gradient norm at most ``max_norm``.

    Each gradient with norm ``n`` is multiplied by ``c = max_norm / (n + 1e-6)`` when ``c < 1``,
    the coefficients computed in a few batched kernels without the original's host sync per
    parameter (``train.fidelity=original``). Identical to :func:`clip_global_norm` while the
    global norm is at most ``max_norm``.

    Args:
        parameters: parameters with gradients.
        max_norm: threshold; ``<= 0`` only measures.

    Returns:
        The global gradient norm before clipping, ``sqrt(sum of squared parameter norms)`` (0-d,
        on the gradients' device).
    """
    grads = [p.grad for p in parameters]
    norms = torch.stack(torch._foreach_norm(grads, 2))  # (P,)
    if max_norm > 0:
        coefficients = max_norm / (norms + 1e-6)
        factors = torch.where(coefficients < 1, coefficients, torch.ones_like(coefficients))
        for grad, factor in zip(grads, factors.unbind()):  # 0-d factors: no host sync
            grad.mul_(factor)
    return norms.double().square().sum().sqrt().float()


def weight_norm(model: nn.Module) -> torch.Tensor:
    """Global L2 norm of ``model``'s parameters (0-d, no host sync): logged with every step and
    checkpoint, so a diverging run shows which checkpoint still had sane weights.

    FSDP-sharded parameters (DTensors) count once: the squares of the local shards are summed over
    processes (a collective; every process must call it)."""
    params = [p.detach() for p in model.parameters()]
    shards = [p.to_local() for p in params if isinstance(p, DTensor)]
    plain = [p for p in params if not isinstance(p, DTensor)]
    squares = torch.zeros((), device=params[0].device)
    if shards:
        squares = all_reduce_sum(torch.stack(torch._foreach_norm(shards)).square().sum())
    if plain:
        squares = squares + torch.stack(torch._foreach_norm(plain)).square().sum()
    return squares.sqrt()


def set_hyperparameters(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    """Set this iteration's learning rate everywhere (times a group's ``lr_scale``) and weight
    decay on decayed groups."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
        if group.get("apply_weight_decay", True):
            group["weight_decay"] = weight_decay


def training_schedules(
    lr: float,
    min_lr: float,
    warmup_epochs: int,
    weight_decay: float,
    weight_decay_end: float,
    teacher_momentum: float,
    teacher_momentum_end: float,
    epochs: int,
    iters_per_epoch: int,
) -> dict[str, np.ndarray]:
    """Per-iteration lr (linear warm-up, cosine), weight decay and teacher momentum (cosine).

    ``lr`` must already include the linear scaling rule ``base_lr * batch / 256``.
    """
    return {
        "lr": cosine_schedule(lr, min_lr, epochs, iters_per_epoch, warmup_epochs),
        "weight_decay": cosine_schedule(weight_decay, weight_decay_end, epochs, iters_per_epoch),
        "momentum": cosine_schedule(teacher_momentum, teacher_momentum_end, epochs, iters_per_epoch),
    }


def run_schedules(optim: OptimConfig, global_batch: int, iters_per_epoch: int) -> dict[str, np.ndarray]:
    """:func:`training_schedules` of a run: peak lr ``optim.lr * global_batch / 256`` (the linear
    scaling rule), over ``optim.schedule_epochs`` (0: ``optim.epochs``) epochs."""
    return training_schedules(
        optim.lr * global_batch / 256,
        optim.min_lr,
        optim.warmup_epochs,
        optim.weight_decay,
        optim.weight_decay_end,
        optim.teacher_momentum,
        optim.teacher_momentum_end,
        optim.schedule_epochs or optim.epochs,
        iters_per_epoch,
    )
