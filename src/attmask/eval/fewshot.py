"""Few-shot weighted k-NN: nu labelled images per class, repeated over disjoint subsets.

The low-shot protocol of the AttMask paper (Table 5b, after MSN / iBOT): the k-NN bank holds
only ``nu`` training images per class; the whole test set is classified; the experiment is
repeated on ``repeats`` disjoint random subsets and the mean and standard deviation of top-1
are reported. ``k = 1`` for ``nu = 1`` (a single image per class makes voting meaningless),
otherwise ``k = 20`` clamped to the bank size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from attmask.eval.knn import weighted_knn

DEFAULT_SHOTS = (1, 5, 10, 20)


@dataclass
class FewShotResult:
    """Top-1 of one ``nu`` over its repeats.

    Attributes:
        shots: images per class in the bank (nu).
        k: neighbours used.
        top1: per-repeat top-1 in percent.
        mean: mean of ``top1``.
        std: sample standard deviation of ``top1`` (0 for one repeat).
    """

    shots: int
    k: int
    top1: list[float]
    mean: float
    std: float


def disjoint_subsets(
    labels: Tensor, shots: int, repeats: int, num_classes: int, generator: torch.Generator
) -> list[Tensor]:
    """``repeats`` disjoint index sets with exactly ``shots`` samples of every class.

    Args:
        labels: ``(M,)`` integer labels.
        shots: samples per class per subset.
        repeats: number of subsets.
        num_classes: classes ``C`` (each must have ``shots * repeats`` samples).
        generator: source of the random permutation.

    Returns:
        ``repeats`` int64 tensors of ``shots * C`` sorted indices.

    Raises:
        ValueError: a class has fewer than ``shots * repeats`` samples.
    """
    needed = shots * repeats
    per_class = []
    for cls in range(num_classes):
        members = torch.nonzero(labels == cls).flatten()
        if members.numel() < needed:
            raise ValueError(
                f"class {cls} has {members.numel()} training images, fewer than "
                f"{shots} shots x {repeats} repeats; lower --repeats or the shots"
            )
        per_class.append(members[torch.randperm(members.numel(), generator=generator)[:needed]])
    return [torch.cat([m[r * shots : (r + 1) * shots] for m in per_class]).sort().values for r in range(repeats)]


def few_shot_knn(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    shots: Sequence[int] = DEFAULT_SHOTS,
    repeats: int = 5,
    k: int = 20,
    temperature: float = 0.07,
    seed: int = 0,
) -> dict[int, FewShotResult]:
    """Few-shot weighted k-NN for every ``nu`` in ``shots``.

    Args:
        train_features: ``(M, D)`` features of the labelled pool the banks are drawn from.
        train_labels: ``(M,)`` labels in ``[0, num_classes)``.
        test_features: ``(Q, D)``.
        test_labels: ``(Q,)``.
        num_classes: ``C``.
        shots: the values of nu.
        repeats: disjoint subsets per nu.
        k: neighbours for nu > 1 (clamped to ``nu * C``); nu = 1 always uses k = 1.
        temperature: voting temperature.
        seed: seeds the subset draws (each nu draws from its own generator).

    Returns:
        ``{nu: FewShotResult}``.
    """
    if repeats < 1 or not shots or min(shots) < 1:
        raise ValueError(f"need repeats >= 1 and shots >= 1, got repeats={repeats}, shots={tuple(shots)}")
    results = {}
    for nu in shots:
        generator = torch.Generator().manual_seed(seed * 1000 + nu)
        used_k = 1 if nu == 1 else min(k, nu * num_classes)
        top1 = []
        for subset in disjoint_subsets(train_labels, nu, repeats, num_classes, generator):
            result = weighted_knn(
                train_features[subset],
                train_labels[subset],
                test_features,
                test_labels,
                num_classes,
                k=used_k,
                temperature=temperature,
            )
            top1.append(result.top1)
        values = torch.tensor(top1, dtype=torch.float64)
        std = values.std().item() if len(top1) > 1 else 0.0
        results[int(nu)] = FewShotResult(int(nu), used_k, top1, values.mean().item(), std)
    return results
