"""The original DINO / iBOT code's costly choices, replicated for the step benchmark only.

``bench_step.py``'s ``reference`` variant measures what the library's fast path saves over the
original implementation. The library itself has one fast path (plus ``train.fidelity``, the
original's *numerics*); this module turns a built method and its optimizer step into the
original's *costs*, with the same numerics (fp32: the same losses up to float noise while no
gradient is clipped; ``tests/benchmarks/test_reference_design.py``):

* every ViT block computes the explicit ``softmax(q K^T / sqrt(d))`` matrix ``(B, heads, T, T)``
  and multiplies it by V, instead of fused SDPA (AttMask's [CLS] row is read from that matrix);
* iBOT's student patch head runs on every patch token, not only on the masked ones;
* the EMA teacher update is a Python loop over parameters, two kernels each;
* the loss is read on the host every step (``.item()``); a non-finite one stops with one line;
* gradients are clipped parameter by parameter (DINO's ``utils.clip_gradients``: each one's own
  norm at most ``optim.clip_grad``), one norm and one host sync per parameter;
* AdamW is PyTorch's default implementation (neither ``fused`` nor ``foreach`` asked for);
* precision is fp16 with a GradScaler on CUDA, fp32 elsewhere, whatever the config says.

The changes are made per object (class swaps, no new parameters, same ``state_dict`` keys), not
by patching the library's classes, so a fast and a reference variant can run side by side, as
the benchmark's interleaved timing needs.

Usage::

    method = build_method(config, global_size, num_local).to(device)
    step = build_reference_step(method, config, device)  # method is now the reference design
    logs = step([crops], epoch, lr, weight_decay, momentum)
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from attmask.config import Config
from attmask.engine.optim import parameter_groups
from attmask.engine.step import OptimizerStep, StepSettings
from attmask.methods import PretrainingMethod, StepOutput
from attmask.methods.ema import Pairs, paired_parameters
from attmask.models import VisionTransformer
from attmask.models.attention import Attention, Block
from attmask.models.vit import ViTOutput


def explicit_attention(attn: Attention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``attn`` on ``x`` ``(B, T, D)`` as the original ViT computes it, the whole matrix spelled out.

    Returns:
        ``(out (B, T, D), attention (B, heads, T, T))``, attention rows summing to 1.
    """
    q, k, v = attn._split_heads(x)
    attention = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, h, T, T)
    return attn._merge(attention @ v), attention


def explicit_block(block: Block, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``block`` on ``x`` ``(B, T, D)`` with :func:`explicit_attention`; also returns its matrix."""
    attended, attention = explicit_attention(block.attn, block.norm1(x))
    x = x + block.drop_path(attended)
    return x + block.drop_path(block.mlp(block.norm2(x))), attention


class ExplicitAttentionViT(VisionTransformer):
    """A :class:`VisionTransformer` whose every block runs :func:`explicit_block` (same parameters).

    Made by :func:`make_reference` from a built ViT (``vit.__class__ = ExplicitAttentionViT``).
    """

    def _encode(self, tokens: torch.Tensor, return_cls_attention: bool, attention_block: int) -> ViTOutput:
        """The blocks with explicit attention and the final norm on tokens ``(B, 1 + N, D)``."""
        chosen = self._block_index(attention_block) if return_cls_attention else -1
        cls_attention = None
        for index, block in enumerate(self.blocks):
            tokens, attention = explicit_block(block, tokens)  # attention (B, h, T, T)
            if index == chosen:
                cls_attention = attention[:, :, 0, 1:]  # CLS->CLS dropped, not renormalised
        tokens = self.norm(tokens)
        return ViTOutput(tokens[:, 0], tokens[:, 1:], cls_attention)


@torch.no_grad()
def ema_update_loop(teacher: nn.Module, student: nn.Module, momentum: float, pairs: Pairs | None = None) -> None:
    """The library's ``ema_update`` as the original code writes it: a Python loop, two kernels per
    parameter (``param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)``); same arguments."""
    for param_k, param_q in zip(*(pairs or paired_parameters(teacher, student))):
        param_k.data.mul_(momentum).add_((1 - momentum) * param_q.data)


class ReferenceMethod(PretrainingMethod):
    """Mixin put in front of a method's class by :func:`make_reference`: the per-step loss read,
    the EMA loop and (iBOT) the student's patch head over every patch token."""

    def training_step(self, crops: list[torch.Tensor], epoch: int) -> StepOutput:
        """The method's step, then its loss read on the host (a non-finite one raises)."""
        out = super().training_step(crops, epoch)
        if not math.isfinite(value := out.loss.item()):
            raise ValueError(f"loss is {value} (reference design reads it every step); lower optim.lr")
        return out

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA step of the teacher with :func:`ema_update_loop`; nothing without a teacher."""
        if self.teacher is None:
            return
        if self._ema_pairs is None:
            self._ema_pairs = paired_parameters(self.teacher, self.student)
        ema_update_loop(self.teacher, self.student, momentum, self._ema_pairs)

    def student_patch_index(self, masks: torch.Tensor) -> torch.Tensor | None:
        """None: iBOT's student patch head runs on every patch token, as in the original code."""
        return None


@functools.cache
def _reference_class(cls: type) -> type:
    return type(f"Reference{cls.__name__}", (ReferenceMethod, cls), {"__module__": __name__})


def make_reference(method: PretrainingMethod) -> PretrainingMethod:
    """Turn ``method`` (iBOT, DINO, MST, ...) and every ViT in it into the reference design, in place.

    Only classes change (:class:`ReferenceMethod` in front of the method's, every
    :class:`VisionTransformer` an :class:`ExplicitAttentionViT`): parameters, buffers, state keys
    and the masking generator's state stay as they were. Returns ``method``.
    """
    for module in method.modules():
        if type(module) is VisionTransformer:
            module.__class__ = ExplicitAttentionViT
    if not isinstance(method, ReferenceMethod):
        method.__class__ = _reference_class(type(method))
    return method


def clip_each_with_host_sync(parameters: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """DINO / iBOT's ``utils.clip_gradients`` as upstream writes it: per parameter one norm, one
    host sync (``.item()``) and one comparison; gradients with norm ``n`` are multiplied by
    ``max_norm / (n + 1e-6)`` when that is below 1 (``max_norm <= 0`` only measures).

    Returns:
        The global norm before clipping, ``sqrt(sum of squared parameter norms)``, a 0-d CPU tensor.
    """
    norms = []
    for parameter in parameters:
        norm = parameter.grad.data.norm(2)
        norms.append(norm.item())
        clip_coef = max_norm / (norm + 1e-6)
        if max_norm > 0 and clip_coef < 1:
            parameter.grad.data.mul_(clip_coef)
    return torch.tensor(math.sqrt(sum(value * value for value in norms)))


class ReferenceStep(OptimizerStep):
    """:class:`OptimizerStep` that clips with :func:`clip_each_with_host_sync` (whatever
    ``settings.per_parameter_clip`` says); everything else is the library's step."""

    def clip(self, parameters: list[torch.Tensor]) -> torch.Tensor:
        """Each parameter's gradient clipped on its own, one host sync per parameter."""
        return clip_each_with_host_sync(parameters, self.settings.clip_grad)


def reference_precision(device: torch.device) -> str:
    """The original's precision: fp16 (with a GradScaler) on CUDA, fp32 elsewhere."""
    return "fp16" if device.type == "cuda" else "fp32"


def reference_optimizer(
    model: nn.Module,
    betas: tuple[float, float] = (0.9, 0.999),
    last_layer_lr_scale: float = 1.0,
    decay_tokens: bool = False,
) -> torch.optim.AdamW:
    """AdamW over the library's parameter groups in PyTorch's default implementation (``fused``
    and ``foreach`` left at None), as the original code builds it."""
    groups = parameter_groups(model, last_layer_lr_scale, decay_tokens)
    return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0, betas=betas)


def build_reference_step(method: PretrainingMethod, config: Config, device: torch.device) -> ReferenceStep:
    """:func:`make_reference` on ``method`` (in place, already on ``device``), then its step:
    :func:`reference_optimizer` over the student, :func:`reference_precision`, the config's
    clipping threshold and last-layer freezing."""
    make_reference(method)
    optim = config.optim
    optimizer = reference_optimizer(method.student, optim.betas, optim.last_layer_lr_scale)
    settings = StepSettings(reference_precision(device), optim.clip_grad, optim.freeze_last_layer_epochs)
    return ReferenceStep(method, optimizer, settings, device)


__all__ = [
    "ExplicitAttentionViT",
    "ReferenceMethod",
    "ReferenceStep",
    "build_reference_step",
    "clip_each_with_host_sync",
    "ema_update_loop",
    "explicit_attention",
    "explicit_block",
    "make_reference",
    "reference_optimizer",
    "reference_precision",
]
