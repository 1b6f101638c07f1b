"""Built-in data sets (Fashion-MNIST, scikit-learn digits) and image folders.

Every item is ``(transform(RGB PIL image), label)``, label -1 for unlabelled folders. Errors
are one :class:`DatasetError` line that names the problem and the fix. ``subset`` keeps the
first images of every class, like the 20% ImageNet subset of AttMask (Kakogeorgiou et al.,
2022, Sec. 4.1).
"""

from __future__ import annotations

import numbers
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from attmask.data.idx import find_fashion_mnist
from attmask.data.images import load_image

BUILTIN = ("fashion-mnist", "digits")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
SPLITS = ("train", "test")
DIGITS_TRAIN = 1500  # of scikit-learn's 1797 digits, after a permutation with seed 0
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


class DatasetError(ValueError):
    """One-line, user-facing data error naming the problem and the fix."""


class ImageDataset(Dataset):
    """Images with one integer label each (-1 = unlabelled).

    Attributes:
        classes: class names, index = label (empty when unlabelled).
        targets: ``(M,)`` int64 labels.
        transform: applied to each RGB PIL image (None returns the image).
        num_skipped: unreadable files skipped so far (in this process).
    """

    classes: list[str]
    targets: np.ndarray

    def __init__(self, transform: Callable[[Image.Image], Any] | None) -> None:
        self.transform = transform
        self.num_skipped = 0

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int) -> Image.Image:
        """The RGB image at ``index``; raises ValueError or OSError when unreadable."""
        raise NotImplementedError

    def select(self, indices: np.ndarray) -> ImageDataset:
        """A data set of the items at ``indices`` only (same classes and transform)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """``(transform(image) or the RGB PIL image, label)``."""
        image, position = self._readable(int(index))
        label = int(self.targets[position])
        return (self.transform(image) if self.transform is not None else image), label

    def _readable(self, index: int) -> tuple[Image.Image, int]:
        return self.image(index), index


class ArrayDataset(ImageDataset):
    """In-memory uint8 images ``(M, H, W)`` (gray) or ``(M, H, W, 3)``, made PIL on the fly."""

    def __init__(
        self,
        images: np.ndarray,
        targets: np.ndarray,
        classes: list[str],
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        super().__init__(transform)
        self.images, self.targets, self.classes = images, np.asarray(targets, dtype=np.int64), classes

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index]).convert("RGB")

    def select(self, indices: np.ndarray) -> ArrayDataset:
        return ArrayDataset(self.images[indices], self.targets[indices], self.classes, self.transform)


class FolderDataset(ImageDataset):
    """Image files. An unreadable file is skipped with one warning naming it, and the next
    readable file (cyclically) is returned in its place, so a batch never fails."""

    def __init__(
        self,
        paths: list[Path],
        targets: np.ndarray,
        classes: list[str],
        transform: Callable[[Image.Image], Any] | None = None,
        max_pixels: int | None = None,
    ) -> None:
        super().__init__(transform)
        self.paths, self.targets, self.classes = paths, np.asarray(targets, dtype=np.int64), classes
        self.max_pixels = max_pixels  # larger images are skipped (load_image)
        self._unreadable: set[int] = set()

    def image(self, index: int) -> Image.Image:
        return load_image(self.paths[index], self.max_pixels)

    def select(self, indices: np.ndarray) -> FolderDataset:
        return FolderDataset(
            [self.paths[i] for i in indices], self.targets[indices], self.classes, self.transform, self.max_pixels
        )

    def _readable(self, index: int) -> tuple[Image.Image, int]:
        for offset in range(len(self.paths)):
            position = (index + offset) % len(self.paths)
            if position in self._unreadable:
                continue
            try:
                return self.image(position), position
            except (ValueError, OSError):
                self._skip(position)
        raise DatasetError(
            f"none of the {len(self.paths)} image files of the data set is readable "
            f"(first: {self.paths[0]}); check the files"
        )

    def _skip(self, position: int) -> None:
        self._unreadable.add(position)
        self.num_skipped += 1
        warnings.warn(
            f"skipping unreadable image {self.paths[position]}; using the next readable one", UserWarning, stacklevel=4
        )


def _scan(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted, hidden files excluded)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def _split_folder(path: Path, split: str) -> Path:
    """``path/train`` or ``path/val|test`` when the folder is split, else ``path`` itself."""
    if not (path / "train").is_dir():
        return path
    held_out = [path / name for name in ("val", "test") if (path / name).is_dir()]
    if not held_out:
        return path
    return path / "train" if split == "train" else held_out[0]


def _folder(path: Path, split: str, transform: Callable | None, max_pixels: int | None = None) -> FolderDataset:
    """An ImageFolder (one subfolder per class) or a flat folder of unlabelled images."""
    root = _split_folder(path, split)
    if root == path and split == "test":
        warnings.warn(
            f"{path} has no train/ and val/ or test/ subfolders: the test split is the same images as the train split",
            UserWarning,
            stacklevel=3,
        )
    class_files = {d.name: _scan(d) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}
    class_files = {name: files for name, files in class_files.items() if files}
    if class_files:
        paths = [p for files in class_files.values() for p in files]
        targets = np.repeat(np.arange(len(class_files)), [len(f) for f in class_files.values()])
        return FolderDataset(paths, targets, list(class_files), transform, max_pixels)
    files = _scan(root)
    if not files:
        raise DatasetError(f"no images found in {root} (looked for {' '.join(IMAGE_EXTENSIONS)})")
    return FolderDataset(files, np.full(len(files), -1), [], transform, max_pixels)


def _digits(split: str, transform: Callable | None) -> ArrayDataset:
    """scikit-learn's 1797 8x8 digits (values 0..16 scaled to uint8), split 1500 / 297."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8)
    order = np.random.default_rng(0).permutation(len(images))
    chosen = order[:DIGITS_TRAIN] if split == "train" else order[DIGITS_TRAIN:]
    return ArrayDataset(images[chosen], digits.target[chosen], [str(d) for d in range(10)], transform)


def _fashion_mnist(split: str, data_dir: str | None, transform: Callable | None) -> ArrayDataset:
    """Fashion-MNIST (Xiao et al., 2017): 60000 train / 10000 test 28x28 gray images."""
    try:
        images, labels = find_fashion_mnist(split, data_dir)
    except FileNotFoundError as error:
        raise DatasetError(str(error)) from None
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read Fashion-MNIST: {error}; reinstall or replace the files") from None
    return ArrayDataset(images, labels, list(FASHION_MNIST_CLASSES), transform)


def _subset_count(subset: float | int) -> int | None:
    """The per-class count of a whole ``subset`` (int, or a whole float > 1), None for a fraction."""
    number = isinstance(subset, numbers.Real) and not isinstance(subset, bool)
    whole = number and (isinstance(subset, numbers.Integral) or (subset > 1 and float(subset).is_integer()))
    if whole and subset >= 1:
        return int(subset)
    if number and 0 < subset <= 1:
        return None
    raise DatasetError(f"subset must be a fraction in (0, 1] or a whole count >= 1 of images per class, got {subset!r}")


def subset_per_class(dataset: ImageDataset, subset: float | int) -> ImageDataset:
    """The first ``subset`` fraction (float in (0, 1]) or count (int >= 1) of images per class.

    A fraction keeps ``floor(size * subset)`` images of a class (at least one); unlabelled images
    (-1) count as one class; the data set order is kept.
    """
    count = _subset_count(subset)
    keep = [np.zeros(0, dtype=np.int64)]
    for label in np.unique(dataset.targets):
        members = np.flatnonzero(dataset.targets == label)
        keep.append(members[: count if count is not None else max(int(len(members) * subset), 1)])
    return dataset.select(np.sort(np.concatenate(keep)))


def _resolve(source: str) -> Path:
    """The folder ``source`` names, or a one-line DatasetError."""
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        return path
    if path.exists():
        raise DatasetError(
            f"data set path is not a folder: {source}; pass a folder of images or a built-in name: {', '.join(BUILTIN)}"
        )
    if os.sep not in source and "/" not in source and not source.startswith((".", "~")):
        raise DatasetError(
            f"unknown data set name: {source}; pass a built-in name ({', '.join(BUILTIN)}) or an existing folder"
        )
    raise DatasetError(
        f"data set path not found: {source}; pass an existing folder or a built-in name: {', '.join(BUILTIN)}"
    )


def build_dataset(
    source: str,
    split: str = "train",
    transform: Callable[[Image.Image], Any] | None = None,
    data_dir: str | None = None,
    subset: float | int | None = None,
    max_pixels: int | None = None,
) -> ImageDataset:
    """A built-in data set by name, or an image folder (class subfolders or flat).

    Args:
        source: ``fashion-mnist``, ``digits``, or a folder: class subfolders (labelled, like
            torchvision's ImageFolder) or images only (unlabelled, label -1). A folder with
            ``train/`` and ``val/`` (or ``test/``) subfolders is split by them.
        split: ``train`` or ``test``.
        transform: applied to each RGB PIL image; None returns the image.
        data_dir: folder holding Fashion-MNIST's IDX files (looked in before
            ``$ATTMASK_DATA_DIR`` and the Debian package's folder).
        subset: the first fraction (in (0, 1]) or count (int) of images of every class.
        max_pixels: image files with more pixels are skipped as unreadable (None: PIL's limit).

    Returns:
        A data set whose item ``i`` is ``(transform(image), label)``.

    Raises:
        DatasetError: unknown name, missing or empty folder, missing files, bad subset (one line).
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose train or test")
    name = source.strip().lower().replace("_", "-")
    if name in ("fashion-mnist", "fashionmnist"):  # built-in names win; write ./digits for a folder
        dataset: ImageDataset = _fashion_mnist(split, data_dir, transform)
    elif name == "digits":
        dataset = _digits(split, transform)
    else:
        dataset = _folder(_resolve(source), split, transform, max_pixels)
    return subset_per_class(dataset, subset) if subset is not None else dataset
