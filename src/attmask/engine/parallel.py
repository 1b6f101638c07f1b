"""How the student (and the teacher) are spread over processes: DDP or FSDP2.

``train.parallel=ddp`` (default) keeps a full copy of every weight and optimizer state on each
process and all-reduces the gradients (:class:`~torch.nn.parallel.DistributedDataParallel`).
``train.parallel=fsdp`` shards them with FSDP2 (:func:`torch.distributed.fsdp.fully_shard`): each
ViT block is one unit, then each ViT, then the whole student (and the whole teacher), as in
DINOv2 and torchtitan. Every parameter is then a DTensor sharded on its first dimension over all
processes, in the student and in the teacher alike, so the EMA update works on the local shards
without communication. The teacher reshards after its (gradient-free) forward, so its parameters
are shards again when the EMA step reads them. In bf16 the shards are gathered in bf16 and the
gradients reduced in fp32 (:class:`~torch.distributed.fsdp.MixedPrecisionPolicy`).

Single-process runs (world size 1) are neither wrapped nor sharded, whatever ``train.parallel``
says; the checkpoint format still follows it (:mod:`attmask.engine.sharded`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.nn.parallel import DistributedDataParallel

from attmask.core.distributed import DistributedContext
from attmask.methods import PretrainingMethod
from attmask.models import VisionTransformer

PARALLEL_MODES = ("ddp", "fsdp")


def parallelize(method: PretrainingMethod, ctx: DistributedContext, mode: str, precision: str) -> nn.Module:
    """Wrap or shard ``method``'s student (and teacher) for ``ctx``; returns what runs the student.

    Args:
        method: built on its device; changed in place (FSDP) or given a DDP runner.
        ctx: where this process runs; nothing is wrapped single-process.
        mode: ``ddp`` or ``fsdp``.
        precision: the resolved precision (``fp32``, ``bf16``, ``fp16``).

    Returns:
        The module to call for the student's forward: the student itself, its DDP wrapper, or
        the sharded student (FSDP modules are called directly).

    Raises:
        ValueError: an unknown mode, or fp16 with FSDP (one line with the fix).
    """
    if mode not in PARALLEL_MODES:
        raise ValueError(f"unknown train.parallel {mode!r}; choose one of {', '.join(PARALLEL_MODES)}")
    if mode == "fsdp" and precision == "fp16":
        raise ValueError("train.parallel=fsdp trains in fp32 or bf16, not fp16 (no GradScaler for shards); use bf16")
    if not ctx.enabled:
        return method.student
    if mode == "fsdp":
        policy = mixed_precision_policy(precision)
        shard_module(method.student, policy, teacher=False)
        if method.teacher is not None:
            shard_module(method.teacher, policy, teacher=True)
        return method.student
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    runner = DistributedDataParallel(method.student, device_ids=device_ids)
    method.set_student_runner(runner)
    return runner


def mixed_precision_policy(precision: str) -> MixedPrecisionPolicy:
    """bf16: parameters gathered in bf16, gradients reduced in fp32; otherwise all fp32."""
    if precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard_module(module: nn.Module, policy: MixedPrecisionPolicy, teacher: bool) -> None:
    """``fully_shard`` every ViT block, then every ViT, then ``module`` itself (in place).

    The ViTs are units of their own so that a ViT can be run alone (the k-NN monitor runs
    ``teacher.backbone``); the heads belong to the root unit. Methods other than ``forward`` that
    callers run on a unit gather its shards too (``register_fsdp_forward_method``). A teacher reshards after its forward
    (it has no backward that would), so that its parameters are shards again for the EMA step.
    """
    for vit in [m for m in module.modules() if isinstance(m, VisionTransformer)]:
        for block in vit.blocks:
            fully_shard(block, mp_policy=policy)
            register_fsdp_forward_method(block, "forward_with_cls_attention")  # the last block's, with AttMask
        fully_shard(vit, mp_policy=policy)
        for name in ("forward_visible", "intermediate_layers"):  # MAE's encoder pass; evaluation
            register_fsdp_forward_method(vit, name)
    fully_shard(module, mp_policy=policy, reshard_after_forward=True if teacher else None)


def is_sharded(module: nn.Module) -> bool:
    """True when ``module`` was sharded by :func:`shard_module`."""
    return isinstance(module, FSDPModule)
