"""Frozen-backbone feature extraction for k-NN, few-shot and linear evaluation.

Feature kinds follow DINO's evaluation protocols (Caron et al., 2021, Sec. 4 and App. C):
the final-norm [CLS] token for k-NN, the concatenated [CLS] tokens of the last 4 blocks for
linear probing of ViT-S (``get_intermediate_layers(x, n=4)``), and global average pooling of the
patch tokens as the usual alternative.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from attmask.core.distributed import is_distributed

#: Supported values of ``extract_features(kind=...)``.
FEATURE_KINDS = ("cls", "gap", "cls+gap", "last4", "last4+gap")


def batch_features(model: nn.Module, images: Tensor, kind: str = "cls") -> Tensor:
    """Features of one batch.

    Args:
        model: ViT returning ``ViTOutput`` (``cls_token (B, D)``, ``patch_tokens (B, N, D)``)
            and, for ``last4``, providing ``intermediate_layers``.
        images: ``(B, C, H, W)`` on the model's device.
        kind: ``cls`` ``(B, D)``; ``gap`` mean patch token ``(B, D)``; ``cls+gap`` both
            concatenated ``(B, 2D)``; ``last4`` [CLS] of the last 4 blocks ``(B, 4D)``;
            ``last4+gap`` those and the mean patch token of the last block ``(B, 5D)`` (DINO's
            ``--avgpool_patchtokens`` linear protocol for ViT-B).

    Returns:
        ``(B, F)`` features in the model's dtype.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; choose one of {', '.join(FEATURE_KINDS)}")
    if kind.startswith("last4"):
        if getattr(model, "depth", 4) < 4:
            raise ValueError(f"kind {kind!r} needs a ViT of at least 4 blocks, got {model.depth}")
        outputs = model.intermediate_layers(images, num_blocks=4)  # 4 x (B, 1 + N, D)
        tokens = [out[:, 0] for out in outputs]
        if kind == "last4+gap":
            tokens.append(outputs[-1][:, 1:].mean(dim=1))
        return torch.cat(tokens, dim=-1)
    output = model(images)
    if kind == "cls":
        return output.cls_token
    pooled = output.patch_tokens.mean(dim=1)  # (B, D)
    return pooled if kind == "gap" else torch.cat([output.cls_token, pooled], dim=-1)


def flattened_images(loader: Iterable) -> tuple[Tensor, Tensor]:
    """The raw-pixel baseline's features: every image of ``loader`` as it enters a backbone,
    flattened, ``(M, C*H*W)`` float, and its labels ``(M,)`` long."""
    images, labels = zip(*loader)
    return torch.cat(images).flatten(1).float(), torch.cat([torch.as_tensor(y) for y in labels]).long()


def _gather_from_ranks(tensor: Tensor) -> Tensor:
    """Concatenate ``(n_r, ...)`` tensors of every rank in rank order (sizes may differ).

    Runs on CUDA under NCCL, on CPU otherwise; returns a CPU tensor. Single-process: the input.
    """
    if not is_distributed():
        return tensor
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    local = tensor.to(device)
    size = torch.tensor([local.shape[0]], device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    counts = [int(count.item()) for count in sizes]
    padded = local.new_zeros((max(counts), *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([part[:count] for part, count in zip(parts, counts)]).cpu()


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    device: torch.device | str = "cpu",
    kind: str = "cls",
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Features and labels of every batch of ``loader``, with the model in eval mode.

    The model (already on ``device``) is switched to eval mode for the extraction; the
    train/eval flag of each of its submodules is restored afterwards, even on error. A
    ``DistributedDataParallel`` wrapper is unwrapped. Inside a process group of more than one
    process, features and labels of all ranks are gathered (rank 0's first, then rank 1's, ...;
    shares may differ in size), so every rank returns the whole set. Rows come in loader order
    per rank, not data set order, and samples a distributed sampler repeated for padding stay
    repeated.

    Args:
        model: ViT returning ``ViTOutput`` (see :func:`batch_features`).
        loader: iterable of ``(images (B, C, H, W), labels (B,))``.
        device: where the forward passes run.
        kind: one of :data:`FEATURE_KINDS` (see :func:`batch_features`).
        progress: show a tqdm progress bar.

    Returns:
        ``(features (M, F) float32 on CPU, labels (M,) int64 on CPU)``.

    Raises:
        ValueError: unknown ``kind``, ``last4`` on a model with fewer than 4 blocks, or a
            loader that yields no batch.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; choose one of {', '.join(FEATURE_KINDS)}")
    backbone = model.module if isinstance(model, DistributedDataParallel) else model
    modes = [(module, module.training) for module in model.modules()]
    features: list[Tensor] = []
    labels: list[Tensor] = []
    model.eval()
    try:
        for images, targets in tqdm(loader, desc=f"features ({kind})", disable=not progress):
            batch = batch_features(backbone, images.to(device, non_blocking=True), kind)
            features.append(batch.float().cpu())
            labels.append(torch.as_tensor(targets).long().cpu().reshape(-1))
    finally:
        for module, training in modes:
            module.training = training
    if not features:
        raise ValueError("the loader yielded no batch; nothing to extract")
    return _gather_from_ranks(torch.cat(features)), _gather_from_ranks(torch.cat(labels))
