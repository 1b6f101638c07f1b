"""Labelled train / test splits for evaluation, from any data source.

Built-in data sets have their own test split; a folder with ``train/`` and ``val/`` (or
``test/``) is split by them; a single labelled folder is split into disjoint parts with a fixed
seed (20% held out by default), so no query image is ever in the bank.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from attmask.data.datasets import DatasetError, ImageDataset, build_dataset, subset_per_class


class UnlabelledError(DatasetError):
    """The data set has no class labels (evaluation needs them)."""


@dataclass
class LabelledSplits:
    """Train (bank / classifier training) and test (queries) data sets with class names."""

    train: ImageDataset
    test: ImageDataset
    classes: list[str]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)


def hold_out(dataset: ImageDataset, fraction: float, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """Split into disjoint ``(rest, held-out fraction)`` parts; order kept, fixed seed."""
    order = np.random.default_rng(seed).permutation(len(dataset))
    cut = max(1, int(len(order) * fraction))
    return dataset.select(np.sort(order[cut:])), dataset.select(np.sort(order[:cut]))


#: Seed of the validation hold-out (``data.val_images``): the same images for every run and seed,
#: so recipes compared on it are compared on the same queries.
VALIDATION_SEED = 2022


def validation_split(dataset: ImageDataset, count: int) -> tuple[ImageDataset, ImageDataset]:
    """Split a training set into ``(rest, validation)``: ``count`` images drawn with the fixed
    :data:`VALIDATION_SEED`, disjoint from the rest; order kept. ``count == 0`` holds nothing out.

    Pretraining uses ``rest`` only, and recipes are chosen on k-NN with a bank from ``rest`` and
    the validation images as queries, so the test split is never looked at while choosing.

    Raises:
        DatasetError: ``count`` negative, or leaving fewer than one image for pretraining.
    """
    if count < 0:
        raise DatasetError(f"data.val_images must be >= 0 (0 = no validation hold-out), got {count}")
    if count == 0:
        return dataset, dataset.select(np.zeros(0, dtype=np.int64))
    if count >= len(dataset):
        raise DatasetError(
            f"data.val_images={count} holds out the whole training set of {len(dataset)} "
            "images; use fewer validation images"
        )
    order = np.random.default_rng(VALIDATION_SEED).permutation(len(dataset))
    return dataset.select(np.sort(order[count:])), dataset.select(np.sort(order[:count]))


def _same_images(a: ImageDataset, b: ImageDataset) -> bool:
    paths = getattr(a, "paths", None)
    return paths is not None and paths == getattr(b, "paths", None)


def labelled_splits(
    source: str,
    transform: Callable[[Any], Any] | None = None,
    data_dir: str | None = None,
    subset: float | int | None = None,
    test_source: str | None = None,
    holdout: float = 0.2,
    seed: int = 0,
    max_pixels: int | None = None,
    validation: int = 0,
) -> LabelledSplits:
    """Train and test sets for k-NN / linear / few-shot / retrieval evaluation.

    Args:
        source: built-in name or folder (see :func:`attmask.data.datasets.build_dataset`).
        transform: applied to both splits.
        data_dir: folder of a built-in data set's files.
        subset: keep the first fraction / count of images per class of the TRAIN split only
            (the paper's 20% ImageNet setting evaluates on the full validation set).
        test_source: a separate folder (or name) for the test split; default: ``source``'s.
        holdout: fraction held out of an unsplit folder.
        seed: seed of that hold-out split.
        max_pixels: refuse images larger than this many pixels (``data.max_image_pixels``).
        validation: when > 0, the test split is this many images held out of the training set
            (:func:`validation_split`) and the train split is the rest: the test split is not read.

    Raises:
        UnlabelledError: unlabelled data.
        DatasetError: class names differing between the splits.
    """
    train = build_dataset(source, "train", transform, data_dir, max_pixels=max_pixels)
    if validation > 0:
        train, test = validation_split(train, validation)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unsplit folder: held out just below
            test = build_dataset(test_source or source, "test", transform, data_dir, max_pixels=max_pixels)
        if test_source is None and _same_images(train, test):
            train, test = hold_out(train, holdout, seed)
    classes = list(getattr(train, "classes", []))
    if not classes or (np.asarray(train.targets) < 0).any():
        raise UnlabelledError(
            f"{source} has no class labels; evaluation needs a folder with one "
            "subfolder per class (or a built-in data set)"
        )
    if list(getattr(test, "classes", [])) != classes:
        raise DatasetError(
            f"the test split's classes {list(getattr(test, 'classes', []))[:5]} differ "
            f"from the train split's {classes[:5]}; use folders with the same class names"
        )
    if subset is not None:
        train = subset_per_class(train, subset)
    return LabelledSplits(train, test, classes)
