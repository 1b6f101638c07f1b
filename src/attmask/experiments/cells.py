"""One cell of the ablation: pretrain (resumable), evaluate the teacher, store the result JSON.

A cell's result file is written atomically after its evaluation, so a stopped experiment
reruns only unfinished cells, and an unfinished cell resumes from its run folder's checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from attmask.config import Config
from attmask.core.checkpoint import CHECKPOINT_NAME
from attmask.core.environment import device_name, loader_workers, running_commit
from attmask.data.augment import eval_transform
from attmask.data.splits import LabelledSplits, labelled_splits
from attmask.engine.data import crop_config
from attmask.engine.logging import LOG_NAME, read_log
from attmask.engine.trainer import Trainer
from attmask.eval.features import extract_features, flattened_images
from attmask.eval.fewshot import few_shot_knn
from attmask.eval.knn import weighted_knn
from attmask.eval.knn_monitor import KNNMonitor
from attmask.eval.linear import LinearProbeConfig, linear_probe_on_features
from attmask.experiments.config import EvalSpec
from attmask.experiments.plan import Cell
from attmask.experiments.run_log import json_records, stalled_seconds
from attmask.methods import build_method
from attmask.runs.monitors import build_monitors
from attmask.viz.curves import series


def standardize(train: Tensor, test: Tensor) -> tuple[Tensor, Tensor]:
    """Both ``(M, F)`` / ``(T, F)`` sets shifted and scaled by the train set's per-feature
    mean and std (MAE's linear probe: BatchNorm without affine before the classifier)."""
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def evaluate_features(
    train: Tensor, train_labels: Tensor, test: Tensor, test_labels: Tensor, num_classes: int, spec: EvalSpec
) -> dict[str, Any]:
    """Weighted k-NN, few-shot k-NN and a linear probe on frozen features.

    Args:
        train: ``(M, F)`` bank / linear training features.
        train_labels: ``(M,)``.
        test: ``(T, F)`` query features.
        test_labels: ``(T,)``.
        num_classes: ``C``.
        spec: evaluation settings. Few-shot subsets and the probe use seed 0, so every cell
            is evaluated on the same subsets (paired comparisons).

    Returns:
        ``{knn_top1, knn_top5, fewshot: {nu: mean}, fewshot_std: {nu: std}, linear_top1,
        linear_top5}`` in percent.
    """
    knn = weighted_knn(train, train_labels, test, test_labels, num_classes, spec.knn_k, spec.temperature)
    shots = few_shot_knn(
        train,
        train_labels,
        test,
        test_labels,
        num_classes,
        spec.shots,
        spec.fewshot_repeats,
        spec.knn_k,
        spec.temperature,
        seed=0,
    )
    probe_config = LinearProbeConfig(epochs=spec.linear_epochs, base_lr=spec.linear_lr, seed=0)
    train_std, test_std = standardize(train, test)
    linear = linear_probe_on_features(train_std, train_labels, test_std, test_labels, num_classes, probe_config)
    return {
        "knn_top1": knn.top1,
        "knn_top5": knn.top5,
        "fewshot": {str(nu): r.mean for nu, r in shots.items()},
        "fewshot_std": {str(nu): r.std for nu, r in shots.items()},
        "linear_top1": linear.top1,
        "linear_top5": linear.top5,
    }


@dataclass
class Evaluator:
    """The labelled splits and settings every cell is evaluated with.

    Attributes:
        spec: evaluation settings.
        splits: train (``spec.train_per_class`` per class) and whole test split, centre crops.
        device: where features are extracted.
    """

    spec: EvalSpec
    splits: LabelledSplits
    device: torch.device

    @classmethod
    def build(cls, spec: EvalSpec, source: str, data_dir: str | None, img_size: int, device: torch.device) -> Evaluator:
        """Load the splits once (errors before any pretraining)."""
        subset = spec.train_per_class or None
        return cls(spec, labelled_splits(source, eval_transform(img_size), data_dir, subset), device)

    def _features(self, backbone: torch.nn.Module, dataset: Any, kind: str) -> tuple[Tensor, Tensor]:
        return extract_features(backbone, self._loader(dataset), self.device, kind)

    def evaluate(self, backbone: torch.nn.Module) -> dict[str, Any]:
        """:func:`evaluate_features` of ``backbone``'s features of each kind of
        ``spec.features``: the first kind's metrics at the top level (the headline), every
        other kind's under its name (e.g. ``metrics["gap"]["knn_top1"]``)."""
        backbone = backbone.to(self.device)
        metrics: dict[str, Any] = {}
        for index, kind in enumerate(self.spec.features):
            train, train_labels = self._features(backbone, self.splits.train, kind)
            test, test_labels = self._features(backbone, self.splits.test, kind)
            scores = evaluate_features(train, train_labels, test, test_labels, self.splits.num_classes, self.spec)
            if index == 0:
                metrics.update(scores)
            else:
                metrics[kind] = scores
        return metrics

    def _pixels(self, dataset: Any) -> tuple[Tensor, Tensor]:
        return flattened_images(self._loader(dataset))

    def _loader(self, dataset: Any) -> DataLoader:
        workers = loader_workers(self.spec.num_workers, "eval.num_workers")
        return DataLoader(dataset, batch_size=self.spec.batch_size, num_workers=workers)

    def evaluate_pixels(self) -> dict[str, Any]:
        """:func:`evaluate_features` of the raw pixels: every image of the splits as it enters
        a backbone (centre crop, normalised), flattened to ``(C * H * W,)``. The reference a
        pretrained feature must beat to be worth more than the input itself."""
        train, train_labels = self._pixels(self.splits.train)
        test, test_labels = self._pixels(self.splits.test)
        return evaluate_features(train, train_labels, test, test_labels, self.splits.num_classes, self.spec)


def evaluate_pixels(evaluator: Evaluator) -> dict[str, Any]:
    """The raw-pixel row: :meth:`Evaluator.evaluate_pixels` with its time and environment."""
    start = time.perf_counter()
    metrics = evaluator.evaluate_pixels()
    return {
        "metrics": metrics,
        "seconds": {"evaluate": time.perf_counter() - start},
        "device": device_name(evaluator.device),
        "commit": running_commit(),
    }


def pixel_settings(config: Config, spec: EvalSpec, img_size: int) -> dict[str, Any]:
    """What the raw-pixel row depends on: the labelled data, the image size and the evaluation
    settings (not the feature kinds: pixels have one kind)."""
    evaluation = asdict(spec)
    del evaluation["features"]
    data = {"source": config.data.source, "data_dir": config.data.data_dir, "img_size": img_size}
    return {"data": data, "eval": evaluation}


def knn_curve(run_dir: Path) -> list[list[float]]:
    """``[[epochs done, online k-NN top-1], ...]`` from a run's log (its k-NN monitor)."""
    epochs, values = series(read_log(run_dir), "knn_top1", x="epoch")
    return [[epoch + 1, value] for epoch, value in zip(epochs, values)]


#: One line per process that trained a cell's run folder: where and with which code it went on.
SEGMENTS_NAME = "segments.jsonl"


def record_segment(run_dir: Path, from_step: int, device: str) -> list[dict[str, Any]]:
    """Append ``{commit, device, from_step, started}`` of this process to ``run_dir``'s
    :data:`SEGMENTS_NAME` and return every segment so far, oldest first. A cell resumed in
    another session may have trained on another machine or commit; its result lists them all
    (``commit`` of the result is the one that evaluated it). A line torn by a kill is skipped."""
    line = {
        "commit": running_commit(),
        "device": device,
        "from_step": from_step,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = run_dir / SEGMENTS_NAME
    before = path.read_bytes() if path.is_file() else b""
    torn = bool(before) and not before.endswith(b"\n")
    with path.open("a") as stream:
        stream.write(("\n" if torn else "") + json.dumps(line) + "\n")
    return json_records(path)


def pretrain_and_evaluate(cell: Cell, config: Config, run_dir: Path, evaluator: Evaluator) -> dict[str, Any]:
    """Pretrain ``cell`` in ``run_dir`` (resuming a checkpoint there) and evaluate its teacher.

    ``seconds["pretrain"]`` is this process's wall time of the pretraining (monitors included)
    plus, for a resumed run, the training-loop seconds of the earlier processes up to the
    checkpoint (``Progress.train_seconds``; their monitors' time is not recorded), so a
    resumed cell is not timed as if it had only run its last part; ``stalled_seconds`` is the
    part of it the log shows stalled (paused, or starved by other work: :func:`stalled_seconds`).
    ``segments`` lists the processes that trained it (:func:`record_segment`).
    """
    resumed = (run_dir / CHECKPOINT_NAME).is_file()
    start = time.perf_counter()
    trainer = Trainer(config, run_dir, callbacks=build_monitors(config, run_dir))
    before = trainer.progress.train_seconds  # of the checkpoint resumed from; 0 for a new run
    segments = record_segment(run_dir, trainer.progress.global_step, device_name(evaluator.device))
    trainer.fit()
    pretrain_seconds = time.perf_counter() - start
    metrics = evaluator.evaluate(trainer.method.teacher.backbone)
    return {
        "cell": asdict(cell),
        "metrics": metrics,
        "curve": knn_curve(run_dir),
        "train_images": len(trainer.dataset),
        "steps": trainer.progress.global_step,
        "seconds": {"pretrain": before + pretrain_seconds, "evaluate": time.perf_counter() - start - pretrain_seconds},
        "stalled_seconds": stalled_seconds(json_records(run_dir / LOG_NAME)),  # of seconds["pretrain"]
        "resumed": resumed,
        "segments": segments,
        "device": device_name(evaluator.device),
        "commit": running_commit(),
    }


def initial_backbone(config: Config) -> torch.nn.Module:
    """The teacher backbone a run of ``config`` starts from (the trainer seeds, then builds)."""
    crops = crop_config(config.data)
    torch.manual_seed(config.train.seed)
    return build_method(config, crops.global_size, crops.num_local).eval_backbone


def evaluate_initial(config: Config, evaluator: Evaluator) -> dict[str, Any]:
    """The random-init row and the epoch-0 point of the k-NN curves for ``train.seed``."""
    start = time.perf_counter()
    backbone = initial_backbone(config).to(evaluator.device)
    monitor = KNNMonitor(config, crop_config(config.data).global_size, evaluator.device)
    online = monitor.evaluate(backbone, prefix="knn").get("knn_top1")
    return {
        "seed": config.train.seed,
        "metrics": evaluator.evaluate(backbone),
        "curve": [] if online is None else [[0, online]],
        "seconds": {"evaluate": time.perf_counter() - start},
        "device": device_name(evaluator.device),
        "commit": running_commit(),
    }
