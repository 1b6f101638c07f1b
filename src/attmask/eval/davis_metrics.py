"""DAVIS 2017 semi-supervised scores: region similarity J, boundary F-measure F, and their Mean,
Recall and Decay, as the official ``davis2017-evaluation`` computes and aggregates them.

Semantics (pinned by ``davis_jf.npz``, made with the official code):

* objects are the labels 1..K, K = the largest label of the first ground-truth frame; a missing
  predicted object is an all-zero mask that still counts; void (255) becomes background and no
  void mask is passed (so a prediction over void is a false positive); frames 1..T-2 are scored;
* J = |P & G| / |P | G|, 1 when both are empty;
* F: boundary maps (a pixel differs from its right, lower or lower-right neighbour; the image border
  never makes a boundary), each dilated by a disk of ``ceil(0.008 * diagonal)`` pixels; precision and
  recall of one boundary within the other's dilation; F = 2PR / (P + R), 1 when both boundary
  maps are empty, 0 when one is;
* Mean = nanmean, Recall = mean of (value > 0.5) with NaN a miss, Decay = mean of the first of 4
  overlapping bins minus the mean of the last; J&F-Mean = (J-Mean + F-Mean) / 2; every mean is
  over all objects of all sequences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

VOID = 255
BOUNDARY_FRACTION = 0.008


def region_similarity(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """J of two bool masks ``(H, W)`` (void pixels, if given, leave both intersection and union)."""
    keep = np.ones_like(gt, dtype=bool) if void is None else ~void
    union = np.sum((pred | gt) & keep)
    return 1.0 if union == 0 else float(np.sum(pred & gt & keep) / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Bool ``(H, W)``: pixels that differ from their right, lower or lower-right neighbour (none across the border)."""
    seg = mask.astype(bool)
    east, south, south_east = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    east[:, :-1], south[:-1, :], south_east[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
    edges = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    edges[-1, :] = seg[-1, :] ^ east[-1, :]
    edges[:, -1] = seg[:, -1] ^ south[:, -1]
    edges[-1, -1] = False
    return edges


def _disk(radius: int) -> np.ndarray:
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2


def boundary_f(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, fraction: float = BOUNDARY_FRACTION
) -> float:
    """F of two bool masks ``(H, W)`` with the tolerance ``ceil(fraction * diagonal)`` pixels."""
    keep = np.ones_like(gt, dtype=bool) if void is None else ~void
    radius = fraction if fraction >= 1 else math.ceil(fraction * math.hypot(*gt.shape))
    pred_edges, gt_edges = boundary_map(pred & keep), boundary_map(gt & keep)
    disk = _disk(int(radius))
    pred_near = ndimage.binary_dilation(pred_edges, disk)
    gt_near = ndimage.binary_dilation(gt_edges, disk)
    n_pred, n_gt = pred_edges.sum(), gt_edges.sum()
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    precision = np.sum(pred_edges & gt_near) / n_pred
    recall = np.sum(gt_edges & pred_near) / n_gt
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def statistics(values: np.ndarray) -> tuple[float, float, float]:
    """``(Mean, Recall, Decay)`` of one object's per-frame scores (``db_statistics``)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")
    recall = float(np.mean(values > 0.5))  # NaN > 0.5 is False: a miss that stays in the denominator
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64)
    first, last = values[ids[0] : ids[1] + 1], values[ids[3] : ids[4] + 1]
    decay = float(np.nanmean(first) - np.nanmean(last))
    return mean, recall, decay


@dataclass
class SequenceScores:
    """Per object (rows) and scored frame (columns): ``j`` and ``f`` ``(K, T - 2)``."""

    j: np.ndarray
    f: np.ndarray


def object_masks(labels: np.ndarray, num_objects: int) -> np.ndarray:
    """Bool ``(K, T, H, W)`` of labels 1..K in ``labels`` ``(T, H, W)`` (void and other ids are background)."""
    return (
        np.stack([labels == k for k in range(1, num_objects + 1)])
        if num_objects
        else np.zeros((0, *labels.shape), bool)
    )


def score_sequence(gt_labels: np.ndarray, pred_labels: np.ndarray, name: str = "sequence") -> SequenceScores:
    """J and F of predicted label maps ``(T, H, W)`` against the ground truth ``(T, H, W)`` (255 = void)."""
    if gt_labels.shape != pred_labels.shape:
        raise ValueError(f"{name}: predictions have shape {pred_labels.shape}, the ground truth {gt_labels.shape}")
    first = gt_labels[0][gt_labels[0] != VOID]
    num_objects = int(first.max()) if first.size else 0
    scored = slice(1, gt_labels.shape[0] - 1)
    predicted = pred_labels[scored]
    if predicted.size and int(predicted.max()) > num_objects:
        raise ValueError(
            f"{name}: the predictions hold object {int(predicted.max())}, but the first frame has "
            f"only {num_objects}; label objects 1..{num_objects}"
        )
    gt, pred = object_masks(gt_labels[scored], num_objects), object_masks(predicted, num_objects)
    j = np.array([[region_similarity(p, g) for p, g in zip(pred[k], gt[k])] for k in range(num_objects)])
    f = np.array([[boundary_f(p, g) for p, g in zip(pred[k], gt[k])] for k in range(num_objects)])
    return SequenceScores(j.reshape(num_objects, -1), f.reshape(num_objects, -1))


def aggregate(sequences: list[SequenceScores]) -> dict[str, float]:
    """The seven global numbers over every object of every sequence (``evaluation_method.py``)."""
    j_stats = [statistics(row) for s in sequences for row in s.j]
    f_stats = [statistics(row) for s in sequences for row in s.f]
    if not j_stats:
        raise ValueError("no object to score: the first ground-truth frames hold no labels")
    j_m, j_r, j_d = (float(np.mean(column)) for column in zip(*j_stats))
    f_m, f_r, f_d = (float(np.mean(column)) for column in zip(*f_stats))
    return {
        "J&F-Mean": (j_m + f_m) / 2,
        "J-Mean": j_m,
        "J-Recall": j_r,
        "J-Decay": j_d,
        "F-Mean": f_m,
        "F-Recall": f_r,
        "F-Decay": f_d,
    }
