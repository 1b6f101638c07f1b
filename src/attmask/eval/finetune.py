"""End-to-end fine-tuning of a pre-trained ViT (the BEiT / iBOT / AttMask recipe).

A linear head on the [CLS] token (or the mean patch token) is trained together with the whole
backbone by AdamW with layer-wise learning-rate decay (BEiT, Bao et al., 2022): the stem gets
``layer_decay ** (depth + 1)`` times the learning rate, block ``i`` gets
``layer_decay ** (depth - i)``, the final norm and the head get 1. Parameter groups come from
:func:`timm.optim.param_groups_layer_decay`; biases, norms, ``pos_embed``, ``cls_token`` and
``mask_token`` have no weight decay. The learning rate warms up linearly, then follows a cosine
to ``min_lr``, per step, scaled by each group's ``lr_scale``. Stochastic depth grows linearly
with depth; the loss is cross-entropy with label smoothing, or soft-target cross-entropy after
timm's Mixup / CutMix when their alphas are positive.

The peak learning rate is ``base_lr * batch_size / 256``, the linear scaling rule of BEiT's
``run_class_finetuning.py`` and MAE's ``main_finetune.py``. As in BEiT, the final norm takes
the head's layer id (timm's ViT grouping puts it with the last block instead).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from attmask.core.schedules import cosine_schedule
from attmask.data.augment import crop_flip_transform, eval_transform, with_transform
from attmask.eval.classifier import (
    POOLS,
    Classifier,
    frozen,
    layer_decay_groups,
    seeded_rng,
    topk_accuracy,
    with_drop_path,
)
from attmask.models.vit import VisionTransformer


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning hyper-parameters (BEiT / iBOT ViT-S defaults, no Mixup for small data).

    Attributes:
        epochs: training epochs.
        batch_size: images per step (every step is full: the last partial batch is dropped).
        base_lr: learning rate per 256 images; the peak is :attr:`lr` = base_lr x batch_size / 256.
        min_lr: end of the cosine.
        warmup_epochs: epochs of linear warm-up from 0.
        weight_decay: AdamW weight decay of weight matrices.
        layer_decay: lr ratio between consecutive layers (0.75 for ViT-S in BEiT / iBOT).
        drop_path: stochastic depth of the last block (``linspace(0, drop_path, depth)``).
        label_smoothing: label smoothing of the targets.
        mixup: Mixup alpha (0 = off).
        cutmix: CutMix alpha (0 = off).
        randaug: add RandAugment (2 ops, magnitude 9) after the crop and flip.
        crop_scale: area range of the random resized crop.
        pool: ``cls`` ([CLS] token) or ``gap`` (mean patch token) under the head.
        head_init_std: std of the head's truncated-normal weights (2e-5 as MAE).
        clip_grad: max global gradient norm, None = no clipping.
        num_workers: data loader processes.
        seed: seeds the head, the shuffling, the augmentation, Mixup and drop path.
    """

    epochs: int = 100
    batch_size: int = 128
    base_lr: float = 1e-3
    min_lr: float = 1e-6
    warmup_epochs: int = 5
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    drop_path: float = 0.1
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    randaug: bool = False
    crop_scale: tuple[float, float] = (0.08, 1.0)
    pool: str = "cls"
    head_init_std: float = 2e-5
    clip_grad: float | None = None
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.warmup_epochs < 0 or self.num_workers < 0:
            raise ValueError(
                f"need epochs >= 1, batch_size >= 1, warmup_epochs >= 0, num_workers "
                f">= 0, got {self.epochs}, {self.batch_size}, {self.warmup_epochs}, "
                f"{self.num_workers}"
            )
        if self.base_lr <= 0 or self.min_lr < 0 or not 0 < self.layer_decay <= 1:
            raise ValueError(
                f"need base_lr > 0, min_lr >= 0 and layer_decay in (0, 1], got "
                f"{self.base_lr}, {self.min_lr}, {self.layer_decay}"
            )
        if not 0 <= self.drop_path < 1 or not 0 <= self.label_smoothing < 1:
            raise ValueError(
                f"need drop_path and label_smoothing in [0, 1), got {self.drop_path}, {self.label_smoothing}"
            )
        if self.mixup < 0 or self.cutmix < 0 or (self.mixes and self.batch_size % 2):
            raise ValueError(
                f"mixup and cutmix alphas must be >= 0 and need an even batch_size, "
                f"got {self.mixup}, {self.cutmix}, batch {self.batch_size}"
            )
        if self.pool not in POOLS or (self.clip_grad is not None and self.clip_grad <= 0):
            raise ValueError(f"need pool in {POOLS} and clip_grad None or > 0, got {self.pool!r}, {self.clip_grad}")

    @property
    def lr(self) -> float:
        """Peak learning rate, ``base_lr * batch_size / 256`` (linear scaling rule)."""
        return self.base_lr * self.batch_size / 256

    @property
    def mixes(self) -> bool:
        """Whether Mixup or CutMix is on."""
        return self.mixup > 0 or self.cutmix > 0


@dataclass
class FinetuneResult:
    """Outcome of fine-tuning.

    Attributes:
        top1: top-1 test accuracy in percent.
        top5: top-``min(5, C)`` test accuracy in percent.
        epochs: epochs trained.
        train_loss: mean training loss of the last epoch.
        history: per epoch ``{"epoch", "train_loss", "lr"}`` (lr: peak group, last step).
        model: the fine-tuned :class:`Classifier` (in eval mode).
    """

    top1: float
    top5: float
    epochs: int
    train_loss: float
    history: list[dict[str, float]]
    model: Classifier = field(repr=False)


def _adamw(model: Classifier, config: FinetuneConfig) -> torch.optim.AdamW:
    """AdamW over the layer-decay groups (fused on CUDA); the lr is set every step."""
    groups = layer_decay_groups(model, config.weight_decay, config.layer_decay)
    return torch.optim.AdamW(groups, lr=config.lr, fused=next(model.parameters()).is_cuda or None)


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], device: torch.device | str = "cpu"
) -> tuple[float, float]:
    """Top-1 and top-``min(5, C)`` accuracy in percent of ``model`` (eval mode, then restored).

    Args:
        model: ``images (B, C, H, W) -> logits (B, C)`` on ``device``.
        loader: ``(images, labels (B,))`` batches.
        device: where the forward passes run.
    """
    logits, labels = [], []
    with frozen(model):
        for images, targets in loader:
            logits.append(model(images.to(device)).float().cpu())
            labels.append(torch.as_tensor(targets).long().reshape(-1))
    if not logits:
        raise ValueError("the test loader yielded no batch; pass a non-empty test set")
    return topk_accuracy(torch.cat(logits), torch.cat(labels))


def _train_epoch(
    model: Classifier,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    lrs: Iterable[float],
    criterion: nn.Module,
    mixup: Mixup | None,
    config: FinetuneConfig,
    device: torch.device,
) -> float:
    """One epoch of AdamW steps at learning rates ``lrs`` (times each group's ``lr_scale``)."""
    model.train()
    total, count = 0.0, 0
    for lr, (images, labels) in zip(lrs, loader):
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        images, targets = images.to(device), labels.long().to(device)
        if mixup is not None:
            images, targets = mixup(images, targets)
        loss = criterion(model(images), targets)
        if not math.isfinite(loss.item()):
            raise ValueError(f"the training loss is {loss.item()}; lower base_lr or set clip_grad")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_grad is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
        optimizer.step()
        total, count = total + loss.item() * len(labels), count + len(labels)
    return total / count


def finetune(
    backbone: VisionTransformer,
    train_dataset: Dataset,
    test_dataset: Dataset,
    num_classes: int,
    config: FinetuneConfig = FinetuneConfig(),
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> FinetuneResult:
    """Fine-tune a copy of ``backbone`` with a new head; evaluate on central crops at the end.

    The caller's backbone and data sets are not modified (the backbone is deep-copied, every
    parameter of the copy trained; the data sets are shallow-copied to set their transforms).
    Torch's and numpy's global generators are seeded from ``config.seed`` inside and restored
    afterwards.

    Args:
        backbone: pre-trained ViT (``img_size``, ``embed_dim``, ``depth``).
        train_dataset: ``ImageDataset`` of PIL images and labels in ``[0, num_classes)``.
        test_dataset: the same for evaluation (central crop, :func:`eval_transform`).
        num_classes: number of classes ``C >= 2``.
        config: hyper-parameters.
        device: where training runs.
        progress: show a tqdm bar over epochs.

    Returns:
        :class:`FinetuneResult`.
    """
    device = torch.device(device)
    if num_classes < 2 or len(train_dataset) < config.batch_size:
        raise ValueError(
            f"need num_classes >= 2 and at least batch_size ({config.batch_size}) "
            f"training images, got {num_classes} and {len(train_dataset)}"
        )
    generator = torch.Generator().manual_seed(config.seed)
    model = Classifier(
        with_drop_path(backbone, config.drop_path).requires_grad_(True),
        num_classes,
        config.pool,
        config.head_init_std,
        generator,
    ).to(device)
    size = backbone.img_size
    train = with_transform(train_dataset, crop_flip_transform(size, config.crop_scale, config.randaug))
    loader = DataLoader(
        train, config.batch_size, shuffle=True, drop_last=True, generator=generator, num_workers=config.num_workers
    )
    optimizer, steps = _adamw(model, config), len(loader)
    schedule = cosine_schedule(config.lr, config.min_lr, config.epochs, steps, config.warmup_epochs)
    mixup = (
        Mixup(config.mixup, config.cutmix, label_smoothing=config.label_smoothing, num_classes=num_classes)
        if config.mixes
        else None
    )
    criterion = (
        SoftTargetCrossEntropy() if mixup is not None else nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    )
    history: list[dict[str, float]] = []
    with seeded_rng(config.seed, device):
        for epoch in tqdm(range(config.epochs), desc="fine-tuning", disable=not progress):
            lrs = schedule[epoch * steps : (epoch + 1) * steps].tolist()
            loss = _train_epoch(model, loader, optimizer, lrs, criterion, mixup, config, device)
            history.append({"epoch": epoch, "train_loss": loss, "lr": lrs[-1]})
    test = with_transform(test_dataset, eval_transform(size))
    top1, top5 = evaluate_classifier(model, DataLoader(test, config.batch_size, num_workers=config.num_workers), device)
    return FinetuneResult(top1, top5, config.epochs, history[-1]["train_loss"], history, model.eval())
