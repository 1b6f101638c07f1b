"""Semi-supervised video object segmentation by label propagation of patch features (DAVIS 2017).

DINO's ``eval_video_segmentation.py`` protocol, on this project's ViT: each frame is resized so its
shorter side is ``scale`` pixels and its longer side a multiple of 64 (bilinear, no antialiasing, as
``cv2.resize``), and its last-block patch tokens (final norm) are the features. The first frame's
labels (one-hot at the patch grid, nearest resize) and those predicted for the ``n_last`` previous
frames are propagated to the next frame: affinities ``exp(<f_t, f_s> / 0.1)`` of L2-normalised
features, kept within a ``(2 r + 1)^2`` patch neighbourhood, only the ``topk`` largest per target
patch over all context frames, normalised to sum 1; the label map is upsampled by the patch size
(bilinear), each label channel min-max normalised, and the argmax resized to the frame (nearest).
Scores: :mod:`attmask.eval.davis_metrics` (J, F, J&F as the official evaluation).

Layout (DAVIS 2017): ``ROOT/JPEGImages/480p/<seq>/*.jpg``, ``ROOT/Annotations/480p/<seq>/*.png``
(indexed PNGs, 255 = void) and ``ROOT/ImageSets/2017/val.txt`` (one sequence per line).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from attmask.data.images import IMAGENET_MEAN, IMAGENET_STD
from attmask.eval.davis_metrics import SequenceScores, aggregate, score_sequence


@dataclass
class PropagationSettings:
    """Label propagation (DINO's defaults: 7 previous frames, radius 12 patches, top 5, temperature 0.1).

    Attributes:
        scale: shorter frame side in pixels.
        n_last: previous frames used as context (besides the first frame).
        radius: neighbourhood radius in patches (0 = the whole frame).
        topk: source patches kept per target patch.
        temperature: affinity temperature.
    """

    scale: int = 480
    n_last: int = 7
    radius: int = 12
    topk: int = 5
    temperature: float = 0.1


def frame_size(height: int, width: int, scale: int) -> tuple[int, int]:
    """``(h, w)``: the shorter side ``scale``, the longer one scaled and cut down to a multiple of 64."""
    if height > width:
        return int(((scale * height) / width // 64) * 64), scale
    return scale, int(((scale * width) / height // 64) * 64)


def read_frame(path: Path, scale: int) -> torch.Tensor:
    """``(1, 3, h, w)`` normalised frame, resized as :func:`frame_size` says."""
    pixels = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)
    image = pixels.permute(2, 0, 1).unsqueeze(0)
    image = F.interpolate(image, size=frame_size(*image.shape[-2:], scale), mode="bilinear", align_corners=False)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


@torch.no_grad()
def patch_features(model: torch.nn.Module, frame: torch.Tensor) -> torch.Tensor:
    """``(h*w, D)`` last-block patch tokens (on the CPU) of a frame ``(1, 3, H, W)``, run on the model's device."""
    device = next(model.parameters()).device
    return model(frame.to(device)).patch_tokens[0].float().cpu()


def neighbourhood(height: int, width: int, radius: int) -> torch.Tensor:
    """``(N, N)`` 0/1: source patch s may inform target patch t when both grid offsets are <= ``radius``."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    near = ((rows[:, None] - rows[None, :]).abs() <= radius) & ((cols[:, None] - cols[None, :]).abs() <= radius)
    return near.float()


def propagate(
    target: torch.Tensor,
    sources: list[torch.Tensor],
    labels: list[torch.Tensor],
    grid: tuple[int, int],
    settings: PropagationSettings,
) -> torch.Tensor:
    """Labels ``(C, h, w)`` of the target frame from context frames.

    Args:
        target: ``(N, D)`` features of the target frame.
        sources: context features ``(N, D)`` each (first frame, then the previous ones).
        labels: their label maps ``(C, h, w)`` (one-hot or propagated soft labels).
        grid: ``(h, w)``, N = h * w.
        settings: :class:`PropagationSettings`.
    """
    target = F.normalize(target, dim=1)
    context = F.normalize(torch.stack(sources), dim=2)  # (S, N, D)
    affinity = torch.exp(torch.einsum("td,snd->stn", target, context) / settings.temperature)  # (S, N_t, N_s)
    if settings.radius > 0:
        affinity = affinity * neighbourhood(*grid, settings.radius).to(affinity)[None]
    affinity = affinity.permute(0, 2, 1).reshape(-1, target.shape[0])  # (S*N_s, N_t)
    smallest_kept = affinity.topk(min(settings.topk, affinity.shape[0]), dim=0).values.min(dim=0).values
    affinity = torch.where(affinity < smallest_kept, torch.zeros_like(affinity), affinity)
    affinity = affinity / affinity.sum(dim=0, keepdim=True)
    stacked = torch.stack(labels)  # (S, C, h, w)
    flat = stacked.reshape(len(labels), stacked.shape[1], -1).permute(1, 0, 2).reshape(stacked.shape[1], -1)
    return (flat @ affinity).reshape(stacked.shape[1], *grid)


def _to_labels(soft: torch.Tensor, patch: int, size: tuple[int, int]) -> np.ndarray:
    """Upsample ``(C, h, w)`` by the patch size, min-max normalise each channel, argmax, resize (nearest)."""
    up = F.interpolate(soft[None], scale_factor=patch, mode="bilinear", align_corners=False)[0]
    low = up.amin(dim=(1, 2), keepdim=True)
    high = (up - low).amax(dim=(1, 2), keepdim=True)
    up = torch.where(up.amax(dim=(1, 2), keepdim=True) > 0, (up - low) / high.clamp_min(1e-12), up)
    labels = up.argmax(dim=0).to(torch.uint8).numpy()
    return np.asarray(Image.fromarray(labels).resize((size[1], size[0]), Image.Resampling.NEAREST))


def segment_video(
    model: torch.nn.Module, frames: list[Path], first_labels: np.ndarray, settings: PropagationSettings
) -> np.ndarray:
    """Predicted label maps ``(T, H, W)`` uint8 of a video from its first frame's labels ``(H, W)``."""
    patch = model.patch_size
    first = read_frame(frames[0], settings.scale)
    grid = (first.shape[-2] // patch, first.shape[-1] // patch)
    first = first[..., : grid[0] * patch, : grid[1] * patch]
    labels = np.where(first_labels == 255, 0, first_labels)
    num_labels = int(labels.max()) + 1
    small = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((grid[1], grid[0]), Image.Resampling.NEAREST))
    one_hot = F.one_hot(torch.from_numpy(small.astype(np.int64)), num_labels).permute(2, 0, 1).float()
    first_features = patch_features(model, first)
    queue: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=settings.n_last)
    predictions = [labels.astype(np.uint8)]
    for path in frames[1:]:
        frame = read_frame(path, settings.scale)[..., : grid[0] * patch, : grid[1] * patch]
        features = patch_features(model, frame)
        soft = propagate(
            features, [first_features, *(f for f, _ in queue)], [one_hot, *(s for _, s in queue)], grid, settings
        )
        queue.append((features, soft))
        predictions.append(_to_labels(soft, patch, first_labels.shape))
    return np.stack(predictions)


def read_labels(path: Path) -> np.ndarray:
    """An annotation PNG as its label indices ``(H, W)`` uint8 (palette images keep their indices)."""
    image = Image.open(path)
    return np.asarray(image if image.mode in ("P", "L") else image.convert("L"), dtype=np.uint8)


def evaluate_davis(
    model: torch.nn.Module,
    root: str | Path,
    settings: PropagationSettings | None = None,
    sequences: list[str] | None = None,
    out_dir: Path | None = None,
) -> dict:
    """Propagate every listed sequence's first-frame labels and score J and F against the annotations."""
    root, settings = Path(root), settings or PropagationSettings()
    if sequences is None:
        listing = root / "ImageSets" / "2017" / "val.txt"
        if not listing.is_file():
            raise FileNotFoundError(
                f"{listing} not found: pass the DAVIS 2017 root (JPEGImages/480p, "
                "Annotations/480p, ImageSets/2017/val.txt)"
            )
        sequences = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    scores: list[SequenceScores] = []
    for name in sequences:
        frames = sorted((root / "JPEGImages" / "480p" / name).glob("*.jpg"))
        truth = np.stack([read_labels(p) for p in sorted((root / "Annotations" / "480p" / name).glob("*.png"))])
        if len(frames) != len(truth) or not frames:
            raise ValueError(f"{name}: {len(frames)} frames but {len(truth)} annotations; both folders must match")
        predicted = segment_video(model.eval(), frames, truth[0], settings)
        if out_dir is not None:
            (out_dir / name).mkdir(parents=True, exist_ok=True)
            for frame, labels in zip(frames, predicted):
                Image.fromarray(labels).save(out_dir / name / f"{frame.stem}.png")
        scores.append(score_sequence(truth, predicted, name))
    return {
        "sequences": sequences,
        **{k: 100 * v for k, v in aggregate(scores).items()},
        "settings": {f.name: getattr(settings, f.name) for f in fields(PropagationSettings)},
    }
