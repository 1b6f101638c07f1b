"""Linear probing of a frozen backbone (DINO's ``eval_linear.py`` protocol).

A ``nn.Linear`` (weights normal with std 0.01, bias 0, DINO's ``LinearClassifier``) is trained on
frozen features with SGD (momentum 0.9, no weight decay) and a cosine learning rate that decays
to 0, ``lr = 0.001 * batch_size / 256`` by default (Caron et al., 2021, App. C; the AttMask paper
follows it). ViT-S features are the [CLS] tokens of the last 4 blocks (``last4``).

:func:`linear_probe_on_features` is the fast mode, on cached features; :func:`linear_probe` the
full protocol, features recomputed per batch from training images augmented anew every epoch
(random resized crop + horizontal flip) and central crops for the test images.

Unlike DINO, whose ``CosineAnnealingLR`` steps once per epoch, the learning rate follows
:func:`~attmask.core.schedules.cosine_schedule` per iteration; the curves agree to within one
epoch's step. Accuracies are in percent, like :mod:`attmask.eval.knn`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from attmask.core.schedules import cosine_schedule
from attmask.data.augment import crop_flip_transform, eval_transform, with_transform
from attmask.eval.classifier import frozen, seeded_rng, topk_accuracy
from attmask.eval.features import FEATURE_KINDS, batch_features, extract_features

#: Feature width of each kind, in units of the backbone's ``embed_dim``.
FEATURE_WIDTHS = {"cls": 1, "gap": 1, "cls+gap": 2, "last4": 4, "last4+gap": 5}


@dataclass(frozen=True)
class LinearProbeConfig:
    """Hyper-parameters of the linear probe (DINO's ``eval_linear.py`` defaults).

    Attributes:
        epochs: training epochs.
        batch_size: samples per SGD step.
        base_lr: learning rate per 256 samples; the run uses :attr:`lr` = base_lr x batch_size / 256.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        feature_kind: one of ``FEATURE_KINDS`` (cls, gap, cls+gap, last4, last4+gap); None =
            ``last4`` for ViTs of >= 4 blocks, else ``cls``.
        crop_scale: area range of the training random resized crop (full mode).
        num_workers: data loader processes (full mode).
        seed: seeds the classifier's initialisation, the shuffling and the augmentation.
    """

    epochs: int = 100
    batch_size: int = 256
    base_lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0
    feature_kind: str | None = None
    crop_scale: tuple[float, float] = (0.08, 1.0)
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.num_workers < 0:
            raise ValueError(
                f"need epochs >= 1, batch_size >= 1 and num_workers >= 0, got "
                f"{self.epochs}, {self.batch_size}, {self.num_workers}"
            )
        if self.base_lr <= 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ValueError(
                f"need base_lr > 0, momentum in [0, 1) and weight_decay >= 0, got "
                f"{self.base_lr}, {self.momentum}, {self.weight_decay}"
            )
        if self.feature_kind is not None and self.feature_kind not in FEATURE_KINDS:
            raise ValueError(
                f"unknown feature_kind {self.feature_kind!r}; choose one of {', '.join(FEATURE_KINDS)} or None"
            )
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")

    @property
    def lr(self) -> float:
        """Peak learning rate, ``base_lr * batch_size / 256`` (linear scaling rule)."""
        return self.base_lr * self.batch_size / 256

    def kind_for(self, depth: int) -> str:
        """The feature kind used for a backbone of ``depth`` blocks."""
        return self.feature_kind or ("last4" if depth >= 4 else "cls")


@dataclass
class LinearProbeResult:
    """Outcome of a linear probe.

    Attributes:
        top1: top-1 test accuracy in percent.
        top5: top-``min(5, C)`` test accuracy in percent.
        epochs: epochs trained.
        train_loss: mean training cross-entropy of every epoch.
        lr: learning rate of the last step of every epoch (cosine, ends near 0).
        feature_kind: the features probed (fast mode: ``config.feature_kind``, maybe None).
        classifier: the trained ``nn.Linear`` (``F -> C``).
    """

    top1: float
    top5: float
    epochs: int
    train_loss: list[float]
    lr: list[float]
    feature_kind: str | None
    classifier: nn.Linear = field(repr=False)


def linear_classifier(in_features: int, num_classes: int, generator: torch.Generator) -> nn.Linear:
    """DINO's ``LinearClassifier``: weights ~ N(0, 0.01^2), bias 0; maps ``(B, F) -> (B, C)``."""
    classifier = nn.Linear(in_features, num_classes)
    nn.init.normal_(classifier.weight, mean=0.0, std=0.01, generator=generator)
    nn.init.zeros_(classifier.bias)
    return classifier


def _fit(
    classifier: nn.Linear,
    epoch_batches: Callable[[], Iterable[tuple[Tensor, Tensor]]],
    iters_per_epoch: int,
    config: LinearProbeConfig,
) -> tuple[list[float], list[float]]:
    """SGD with a per-step cosine lr on ``(features (B, F), labels (B,))`` batches of each epoch."""
    optimizer = torch.optim.SGD(
        classifier.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    schedule = cosine_schedule(config.lr, 0.0, config.epochs, iters_per_epoch)
    losses, lrs, step = [], [], 0
    for _ in range(config.epochs):
        total, count = 0.0, 0
        for features, labels in epoch_batches():
            for group in optimizer.param_groups:
                group["lr"] = float(schedule[min(step, len(schedule) - 1)])
            loss = F.cross_entropy(classifier(features), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count, step = total + loss.item() * len(labels), count + len(labels), step + 1
        losses.append(total / max(count, 1))
        lrs.append(optimizer.param_groups[0]["lr"])
    return losses, lrs


def _check_features(
    train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor, num_classes: int
) -> None:
    """Raise ValueError on empty or inconsistent features / labels or a bad ``num_classes``."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    for name, features, labels in (("train", train_features, train_labels), ("test", test_features, test_labels)):
        if features.dim() != 2 or features.shape[0] == 0 or not features.is_floating_point():
            raise ValueError(
                f"{name}_features must be a non-empty float (M, F) tensor, got {features.dtype} {tuple(features.shape)}"
            )
        if labels.shape != features.shape[:1] or labels.is_floating_point():
            raise ValueError(
                f"{name}_labels must be integer ({features.shape[0]},) to match "
                f"{name}_features, got {labels.dtype} {tuple(labels.shape)}"
            )
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"{name}_labels must lie in [0, {num_classes - 1}]; fix the labels or num_classes")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train and test features differ in width ({train_features.shape[1]} vs "
            f"{test_features.shape[1]}); extract both with the same kind"
        )


def linear_probe_on_features(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    config: LinearProbeConfig = LinearProbeConfig(),
) -> LinearProbeResult:
    """Linear probe on cached features: seeded shuffled minibatches, no augmentation.

    Runs on the device of ``train_features``; the inputs are not modified.

    Args:
        train_features: ``(M, F)`` float training features.
        train_labels: ``(M,)`` integer labels in ``[0, num_classes)``.
        test_features: ``(T, F)`` float test features.
        test_labels: ``(T,)`` integer labels.
        num_classes: number of classes ``C >= 2``.
        config: hyper-parameters (``feature_kind`` is only recorded).

    Returns:
        :class:`LinearProbeResult`; equal results for equal seeds.
    """
    _check_features(train_features, train_labels, test_features, test_labels, num_classes)
    generator = torch.Generator().manual_seed(config.seed)
    device = train_features.device
    classifier = linear_classifier(train_features.shape[1], num_classes, generator).to(device)
    features, labels, size = train_features.float(), train_labels.long().to(device), len(train_features)

    def epoch_batches() -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(size, generator=generator).to(device)
        for start in range(0, size, config.batch_size):
            chosen = order[start : start + config.batch_size]
            yield features[chosen], labels[chosen]

    losses, lrs = _fit(classifier, epoch_batches, -(-size // config.batch_size), config)
    with torch.no_grad():
        logits = classifier(test_features.float().to(device))
    top1, top5 = topk_accuracy(logits, test_labels.long().to(device))
    return LinearProbeResult(top1, top5, config.epochs, losses, lrs, config.feature_kind, classifier)


def _check_backbone(backbone: nn.Module, num_classes: int, device: torch.device) -> None:
    """Raise ValueError on fewer than 2 classes or a backbone that is not on ``device``."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    where = next(backbone.parameters()).device
    if where.type != device.type:
        raise ValueError(f"the backbone is on {where}, not {device}; move it with backbone.to(device)")


@torch.no_grad()
def _feature_batches(
    backbone: nn.Module, loader: DataLoader, kind: str, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    """``(features (B, F) float32, labels (B,))`` of each batch, without gradients."""
    for images, labels in loader:
        yield batch_features(backbone, images.to(device), kind).float(), labels.long().to(device)


def linear_probe(
    backbone: nn.Module,
    train_dataset: Dataset,
    test_dataset: Dataset,
    num_classes: int,
    config: LinearProbeConfig = LinearProbeConfig(),
    device: torch.device | str = "cpu",
    train_transform: Callable | None = None,
    test_transform: Callable | None = None,
) -> LinearProbeResult:
    """Full linear-probe protocol on a frozen ViT, features recomputed on augmented images.

    The backbone (already on ``device``) runs in eval mode without gradients; its train flags
    are restored afterwards and its parameters are never updated. The data sets are copied to
    set their transforms; the caller's are left alone.

    Args:
        backbone: ViT with ``embed_dim``, ``depth``, ``img_size`` (see :func:`batch_features`).
        train_dataset: ``ImageDataset`` of PIL images and labels in ``[0, num_classes)``.
        test_dataset: the same for evaluation.
        num_classes: number of classes ``C >= 2``.
        config: hyper-parameters.
        device: where the backbone and the classifier run.
        train_transform: ``PIL -> (3, H, W)``; default :func:`crop_flip_transform` at
            ``img_size``.
        test_transform: default :func:`~attmask.data.augment.eval_transform` at ``img_size``.

    Returns:
        :class:`LinearProbeResult` (top-1 / top-5 of the central-crop test images).
    """
    device = torch.device(device)
    _check_backbone(backbone, num_classes, device)
    kind, size = config.kind_for(backbone.depth), backbone.img_size
    train = with_transform(train_dataset, train_transform or crop_flip_transform(size, config.crop_scale))
    test = with_transform(test_dataset, test_transform or eval_transform(size))
    generator = torch.Generator().manual_seed(config.seed)
    classifier = linear_classifier(FEATURE_WIDTHS[kind] * backbone.embed_dim, num_classes, generator).to(device)
    loader = DataLoader(train, config.batch_size, shuffle=True, generator=generator, num_workers=config.num_workers)
    with seeded_rng(config.seed, device), frozen(backbone):
        losses, lrs = _fit(classifier, lambda: _feature_batches(backbone, loader, kind, device), len(loader), config)
    test_loader = DataLoader(test, config.batch_size, num_workers=config.num_workers)
    features, labels = extract_features(backbone, test_loader, device, kind)
    with torch.no_grad():
        top1, top5 = topk_accuracy(classifier(features.to(device)), labels.to(device))
    return LinearProbeResult(top1, top5, config.epochs, losses, lrs, kind, classifier)
