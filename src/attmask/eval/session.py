"""One evaluation session: a loaded backbone, labelled splits, loaders and the feature cache.

Protocols (``attmask.eval.protocols``) ask the session for features of a split; the session
extracts them once per (split, kind) in a process, and across processes through the on-disk
cache. Under ``torchrun`` each rank extracts a disjoint share of the images and all ranks get
the gathered features (the disk cache is then not used).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from attmask.core.distributed import is_distributed
from attmask.core.environment import loader_workers
from attmask.data.augment import eval_transform
from attmask.data.splits import LabelledSplits, labelled_splits
from attmask.eval.cache import cached_features, file_fingerprint
from attmask.eval.features import extract_features
from attmask.models.checkpoints import LoadedBackbone, pretraining_data


@dataclass
class DataOptions:
    """Where the labelled images come from and how they are read.

    Attributes:
        source: fashion-mnist, digits, or a labelled image folder (one subfolder per class); the
            data root for revisited and davis (which ``attmask eval`` requires). Null (default):
            the checkpoint's pretraining data (its ``data.source``), or :data:`DEFAULT_SOURCE` for
            a checkpoint without a pretraining config (converted original, timm, safetensors); see
            :func:`with_source`.
        data_dir: folder holding a built-in data set's files (null with an inherited ``source``:
            the pretraining's ``data.data_dir``).
        test_source: separate labelled folder for the test split (null: the source's own test
            split, or a hold-out of an unsplit folder).
        subset: the first fraction of each class's training images (null = all).
        per_class: the first that many training images of each class instead (a count).
        img_size: evaluation crop size (null: the backbone's ``img_size``).
        batch_size: images per forward pass of the feature extraction.
        num_workers: loader worker processes of the feature extraction.
    """

    source: str | None = None
    data_dir: str | None = None
    test_source: str | None = None
    subset: float | None = None
    per_class: int | None = None
    img_size: int | None = None
    batch_size: int = 256
    num_workers: int = 2

    @property
    def train_subset(self) -> float | int | None:
        """What :func:`~attmask.data.splits.labelled_splits` keeps of the train split: the count
        ``per_class`` when set, else the fraction ``subset``."""
        return self.per_class if self.per_class is not None else self.subset


#: Evaluation data of a checkpoint that does not say what it was pretrained on (the embedded default).
DEFAULT_SOURCE = "fashion-mnist"


def with_source(data: DataOptions, pretraining: dict[str, Any] | None) -> DataOptions:
    """``data`` with its ``source`` resolved (a new object): as set; else the pretraining config's
    ``data.source`` (with its ``data.data_dir`` unless ``data_dir`` is set), so a run pretrained on
    digits or on a folder is evaluated on the same images by default; else :data:`DEFAULT_SOURCE`."""
    if data.source is not None:
        return data
    pretrained_on = pretraining_data(pretraining)
    if pretrained_on is None:
        return replace(data, source=DEFAULT_SOURCE)
    source, data_dir = pretrained_on
    return replace(data, source=source, data_dir=data.data_dir if data.data_dir is not None else data_dir)


def shard(dataset: Dataset) -> Dataset:
    """This rank's share ``rank::world_size`` of a data set (no padding, no repeats)."""
    if not is_distributed():
        return dataset
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    return Subset(dataset, list(range(rank, len(dataset), world)))  # type: ignore[arg-type]


@dataclass
class EvalSession:
    """Backbone + data + device + cache.

    Attributes:
        loaded: the backbone and its provenance.
        data: data options; a null ``source`` is resolved from ``loaded.config`` (:func:`with_source`).
        device: where forward passes run.
        cache_dir: feature cache folder, or None.
        progress: show progress bars.
    """

    loaded: LoadedBackbone
    data: DataOptions
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cache_dir: Path | None = None
    progress: bool = False
    _splits: LabelledSplits | None = field(default=None, init=False, repr=False)
    _memory: dict[tuple[str, str], tuple[Tensor, Tensor]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data = with_source(self.data, self.loaded.config)  # a new object: the caller's is not changed
        self.loaded.model.to(self.device)

    @property
    def backbone(self) -> torch.nn.Module:
        """The evaluated ViT (on :attr:`device`)."""
        return self.loaded.model

    @property
    def img_size(self) -> int:
        """Evaluation crop size."""
        return self.data.img_size or int(self.loaded.kwargs["img_size"])

    @property
    def splits(self) -> LabelledSplits:
        """Train / test data sets with the evaluation transform (built once)."""
        if self._splits is None:
            self._splits = labelled_splits(
                self.data.source,
                eval_transform(self.img_size),
                self.data.data_dir,
                self.data.train_subset,
                self.data.test_source,
            )
        return self._splits

    def loader(self, dataset: Dataset) -> DataLoader:
        """A sequential loader over this rank's share of ``dataset``."""
        return DataLoader(
            shard(dataset),
            batch_size=self.data.batch_size,
            shuffle=False,
            num_workers=loader_workers(self.data.num_workers),
            pin_memory=self.device.type == "cuda",
        )

    def describe(self) -> dict[str, Any]:
        """What the results depend on (written into every result JSON and cache key)."""
        return {
            "checkpoint": file_fingerprint(self.loaded.path),
            "which": self.loaded.which,
            "layout": self.loaded.layout,
            "vit": self.loaded.kwargs,
            "data": self.data.source,
            "data_dir": self.data.data_dir,
            "test_data": self.data.test_source,
            "subset": self.data.train_subset,
            "img_size": self.img_size,
        }

    def features(self, split: str, kind: str = "cls") -> tuple[Tensor, Tensor]:
        """``(features (M, F) float32, labels (M,) int64)`` of ``split`` (``train``/``test``)."""
        if (split, kind) not in self._memory:
            dataset = self.splits.train if split == "train" else self.splits.test
            key = {**self.describe(), "split": split, "kind": kind, "num_images": len(dataset)}

            def compute() -> tuple[Tensor, Tensor]:
                return extract_features(self.backbone, self.loader(dataset), self.device, kind, self.progress)

            # every rank takes part in the gather, so ranks must not disagree on cache hits
            cache_dir = None if is_distributed() else self.cache_dir
            features, labels, _ = cached_features(cache_dir, key, compute)
            self._memory[(split, kind)] = (features, labels)
        return self._memory[(split, kind)]
