"""The model that fine-tuning trains: a ViT with a linear head on [CLS] or the mean patch token,
with the layer ids and no-decay names that layer-wise learning-rate decay needs
(:func:`layer_decay_groups`, BEiT's rule through :func:`timm.optim.param_groups_layer_decay`),
and DeiT's stochastic depth rule (:func:`with_drop_path`); and what linear probing and fine-tuning
share: top-k accuracy, seeded global generators, a backbone frozen in eval mode."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from timm.layers import DropPath
from timm.optim import param_groups_layer_decay
from torch import Tensor, nn

from attmask.models.vit import VisionTransformer

POOLS = ("cls", "gap")


class Classifier(nn.Module):
    """A ViT backbone with a linear head: ``images (B, C, H, W) -> logits (B, num_classes)``.

    The backbone is used as given (not copied). Layer groups for
    :func:`timm.optim.param_groups_layer_decay` are the backbone's, with the final norm moved
    next to the head (BEiT: everything after the blocks takes the last layer id).

    Args:
        backbone: :class:`~attmask.models.vit.VisionTransformer`.
        num_classes: outputs of the head.
        pool: ``cls`` ([CLS] token ``(B, D)``) or ``gap`` (mean patch token ``(B, D)``).
        head_init_std: std of the head's truncated-normal (+-2 std) weights; bias 0.
        generator: source of the head's initialisation (None: torch's global generator).
    """

    def __init__(
        self,
        backbone: VisionTransformer,
        num_classes: int,
        pool: str = "cls",
        head_init_std: float = 2e-5,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if pool not in POOLS or num_classes < 1:
            raise ValueError(f"need pool in {POOLS} and num_classes >= 1, got {pool!r}, {num_classes}")
        self.backbone, self.pool = backbone, pool
        self.head = nn.Linear(backbone.embed_dim, num_classes)
        nn.init.trunc_normal_(
            self.head.weight, std=head_init_std, a=-2 * head_init_std, b=2 * head_init_std, generator=generator
        )
        nn.init.zeros_(self.head.bias)

    def forward(self, images: Tensor) -> Tensor:
        """Args: images ``(B, C, H, W)``. Returns logits ``(B, num_classes)``."""
        output = self.backbone(images)
        pooled = output.cls_token if self.pool == "cls" else output.patch_tokens.mean(dim=1)
        return self.head(pooled)

    def group_matcher(self, coarse: bool = False) -> dict:
        """Backbone stem = layer 0, ``backbone.blocks.i`` = layer ``i + 1``, the rest last."""
        stem = self.backbone.group_matcher(coarse)["stem"]
        return dict(stem=stem.replace("^", r"^backbone\."), blocks=r"^backbone\.blocks\.(\d+)")

    def no_weight_decay(self) -> set[str]:
        """The backbone's no-weight-decay parameters, with their ``backbone.`` prefix."""
        return {f"backbone.{name}" for name in self.backbone.no_weight_decay()}


def with_drop_path(backbone: VisionTransformer, rate: float) -> VisionTransformer:
    """A deep copy of ``backbone`` whose block ``i`` drops paths with ``linspace(0, rate, depth)[i]``.

    The stochastic depth decay rule of DeiT / BEiT; the caller's model is left alone.
    """
    if not 0 <= rate < 1:
        raise ValueError(f"drop path rate must be in [0, 1), got {rate}")
    copied = copy.deepcopy(backbone)
    for block, block_rate in zip(copied.blocks, torch.linspace(0, rate, copied.depth).tolist()):
        block.drop_path = DropPath(block_rate) if block_rate > 0 else nn.Identity()
    return copied


def layer_decay_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict]:
    """timm's layer-decay parameter groups of ``model`` (each with ``lr_scale`` and
    ``weight_decay``), excluding ``model.no_weight_decay()`` and 1-d parameters from decay."""
    return param_groups_layer_decay(
        model, weight_decay=weight_decay, no_weight_decay_list=tuple(model.no_weight_decay()), layer_decay=layer_decay
    )


def topk_accuracy(logits: Tensor, labels: Tensor) -> tuple[float, float]:
    """Top-1 and top-``min(5, C)`` accuracy in percent of ``logits (M, C)`` for ``labels (M,)``."""
    ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices  # (M, k)
    hits = ranked == labels.reshape(-1, 1)
    return (hits[:, 0].float().mean().item() * 100.0, hits.any(dim=1).float().mean().item() * 100.0)


@contextmanager
def seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's (and numpy's, for timm's Mixup) global generators inside, restore them after."""
    devices = [device] if device.type == "cuda" else []
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)


@contextmanager
def frozen(backbone: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside (gradients are the caller's ``no_grad``); train flags restored after."""
    modes = [(module, module.training) for module in backbone.modules()]
    backbone.eval()
    try:
        yield backbone
    finally:
        for module, training in modes:
            module.training = training
