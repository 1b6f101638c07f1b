"""Built-in data sets, image folders, unreadable files, per-class subsets, one-line errors."""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from attmask.data import DatasetError, build_dataset, eval_transform
from attmask.data import idx as idx_module

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_TRAIN_MEAN = 72.94  # mean uint8 pixel of the 60000 training images


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTMASK_DATA_DIR", raising=False)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write uint8 ``array`` as IDX (gzipped when the name ends in .gz)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def _write_fashion(folder: Path, count: int, seed: int, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, count, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix in ("train", "t10k"):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


def _save_digits(folder: Path, per_class: int, classes: tuple[int, ...] = (0, 1, 2), flat: bool = False) -> None:
    """Real 8x8 gray digits from scikit-learn as PNG files, one subfolder per class unless flat."""
    digits = load_digits()
    for label in classes:
        target = folder if flat else folder / str(label)
        target.mkdir(parents=True, exist_ok=True)
        for k, index in enumerate(np.flatnonzero(digits.target == label)[:per_class]):
            pixels = np.round(digits.images[index] * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(target / f"{label}_{k:02d}.png")


def test_fashion_mnist_from_the_debian_package() -> None:
    if not DEBIAN_DIR.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{DEBIAN_DIR} is missing; CI must apt-get install dataset-fashion-mnist")
        pytest.skip(f"{DEBIAN_DIR} is missing (apt-get install dataset-fashion-mnist)")
    train, test = build_dataset("fashion-mnist", "train"), build_dataset("fashion-mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert len(train.classes) == 10 and train.classes[9] == "Ankle boot"
    assert np.bincount(train.targets).tolist() == [6000] * 10
    assert np.bincount(test.targets).tolist() == [1000] * 10
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == np.uint8
    assert train.images.mean() == pytest.approx(FASHION_MNIST_TRAIN_MEAN, abs=0.05)
    image, label = train[0]
    assert image.mode == "RGB" and image.size == (28, 28) and isinstance(label, int)
    assert label == 9  # the first training image is an ankle boot


@pytest.mark.parametrize("gz", [True, False])
def test_data_dir_argument_reads_idx_files(tmp_path: Path, gz: bool) -> None:
    images, labels = _write_fashion(tmp_path, 5, seed=0, gz=gz)
    dataset = build_dataset("fashion-mnist", "test", data_dir=str(tmp_path))
    assert len(dataset) == 5 and dataset.targets.tolist() == labels.tolist()
    image, label = dataset[3]
    assert label == labels[3]
    np.testing.assert_array_equal(np.asarray(image)[..., 1], images[3])


def test_env_var_subfolder_and_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_images, _ = _write_fashion(tmp_path / "env" / "fashion-mnist", 4, seed=1, gz=True)
    monkeypatch.setenv("ATTMASK_DATA_DIR", str(tmp_path / "env"))
    np.testing.assert_array_equal(build_dataset("fashion-mnist").images, env_images)
    arg_images, _ = _write_fashion(tmp_path / "arg", 3, seed=2, gz=False)
    np.testing.assert_array_equal(build_dataset("fashion-mnist", data_dir=str(tmp_path / "arg")).images, arg_images)


def test_fashion_mnist_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetError, match="no Fashion-MNIST IDX files .* in .*; fix --data-dir"):
        build_dataset("fashion-mnist", data_dir=str(tmp_path))
    monkeypatch.setattr(idx_module, "DEBIAN_DIR", tmp_path / "absent")
    monkeypatch.setattr(idx_module, "_online", lambda *args, **kwargs: False)
    with pytest.raises(DatasetError) as error:
        build_dataset("fashion-mnist")
    message = str(error.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist, or pass --data-dir/ATTMASK_DATA_DIR with the IDX files" in message
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(DatasetError, match="cannot read Fashion-MNIST: .*not an IDX file"):
        build_dataset("fashion-mnist", data_dir=str(tmp_path))


def test_digits_split_is_fixed_and_disjoint() -> None:
    train, test = build_dataset("digits", "train"), build_dataset("digits", "test")
    assert (len(train), len(test)) == (1500, 297)
    assert train.targets.tolist() == build_dataset("digits", "train").targets.tolist()
    rows = {row.tobytes() for row in train.images} | {row.tobytes() for row in test.images}
    assert len(rows) > 1700  # the two splits together cover the data set (a few digits repeat)
    assert train.images.dtype == np.uint8 and train.images.max() == 255
    image, label = test[0]
    assert image.mode == "RGB" and image.size == (8, 8) and 0 <= label <= 9


def test_image_folder_with_classes_makes_gray_rgb(tmp_path: Path) -> None:
    _save_digits(tmp_path, per_class=4)
    dataset = build_dataset(str(tmp_path))
    assert dataset.classes == ["0", "1", "2"] and dataset.targets.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    image, label = dataset[5]
    assert image.mode == "RGB" and label == 1
    assert np.array_equal(np.asarray(image)[..., 0], np.asarray(image)[..., 2])
    tensors = build_dataset(str(tmp_path), transform=eval_transform(16))
    assert tensors[0][0].shape == (3, 16, 16) and tensors[0][0].dtype == torch.float32


def test_image_folder_with_train_and_val_subfolders(tmp_path: Path) -> None:
    _save_digits(tmp_path / "train", per_class=3)
    _save_digits(tmp_path / "val", per_class=2, classes=(0, 1, 2))
    train, test = build_dataset(str(tmp_path), "train"), build_dataset(str(tmp_path), "test")
    assert (len(train), len(test)) == (9, 6) and train.classes == test.classes == ["0", "1", "2"]


def test_flat_folder_is_unlabelled_and_serves_both_splits(tmp_path: Path) -> None:
    _save_digits(tmp_path, per_class=2, classes=(3, 7), flat=True)
    dataset = build_dataset(str(tmp_path))
    assert len(dataset) == 4 and dataset.classes == [] and {dataset[i][1] for i in range(4)} == {-1}
    with pytest.warns(UserWarning, match="the test split is the same images"):
        assert len(build_dataset(str(tmp_path), "test")) == 4


def test_corrupt_file_is_skipped_once_with_a_warning(tmp_path: Path) -> None:
    _save_digits(tmp_path, per_class=2, classes=(0, 1))
    bad = tmp_path / "0" / "0_99.png"  # sorts last in class 0, before class 1's files
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    dataset = build_dataset(str(tmp_path))
    assert len(dataset) == 5 and dataset.num_skipped == 0
    with pytest.warns(UserWarning, match="0_99.png") as caught:
        image, label = dataset[2]
    assert len(caught) == 1 and dataset.num_skipped == 1
    assert label == 1 and np.array_equal(np.asarray(image), np.asarray(dataset[3][0]))  # the next one
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = [dataset[i] for i in range(len(dataset))]
    assert dataset.num_skipped == 1 and [label for _, label in batch] == [0, 0, 1, 1, 1]


def test_all_files_unreadable_raises(tmp_path: Path) -> None:
    for name in ("a.png", "b.jpg"):
        (tmp_path / name).write_bytes(b"garbage")
    dataset = build_dataset(str(tmp_path))
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="none of the 2 image files"):
        dataset[0]


def test_path_and_name_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=r"no images found in .* \(looked for .jpg .jpeg .png .bmp .webp .tif"):
        build_dataset(str(tmp_path))
    missing = str(tmp_path / "missing")
    with pytest.raises(DatasetError) as error:
        build_dataset(missing)
    assert str(error.value) == (
        f"data set path not found: {missing}; pass an existing folder or a built-in name: fashion-mnist, digits"
    )
    with pytest.raises(DatasetError, match="unknown data set name: cifar10; .*fashion-mnist, digits"):
        build_dataset("cifar10")
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        build_dataset("digits", "val")


def test_subset_keeps_the_first_images_of_every_class(tmp_path: Path) -> None:
    full = build_dataset("digits")
    fraction = build_dataset("digits", subset=0.2)
    expected = [int(count * 0.2) for count in np.bincount(full.targets)]
    assert np.bincount(fraction.targets).tolist() == expected
    first_zeros = full.images[full.targets == 0][: expected[0]]
    np.testing.assert_array_equal(fraction.images[fraction.targets == 0], first_zeros)
    assert np.bincount(build_dataset("digits", subset=5).targets).tolist() == [5] * 10
    assert len(build_dataset("digits", subset=1.0)) == 1500
    _save_digits(tmp_path, per_class=4)
    folder = build_dataset(str(tmp_path), subset=2)
    assert [p.name for p in folder.paths] == ["0_00.png", "0_01.png", "1_00.png", "1_01.png", "2_00.png", "2_01.png"]


@pytest.mark.parametrize("subset", [0, 0.0, -0.1, 1.5, -3, True, "half"])
def test_subset_out_of_range_raises(subset: object) -> None:
    with pytest.raises(ValueError, match="subset must be a fraction in"):
        build_dataset("digits", subset=subset)  # type: ignore[arg-type]


def test_validation_split_is_fixed_disjoint_and_held_out_of_pretraining() -> None:
    from attmask.config import load_config
    from attmask.data.datasets import ArrayDataset
    from attmask.data.splits import validation_split
    from attmask.engine.data import build_pretraining_data

    ids = np.arange(500)  # image i holds the number i: the split is read off the pixels
    numbered = ArrayDataset(
        np.stack([np.full((2, 2), i // 2, np.uint8) + np.array([[0, i % 2], [0, 0]], np.uint8) for i in ids]),
        ids % 10,
        [str(c) for c in range(10)],
    )
    rest, held = validation_split(numbered, 100)
    assert len(held) == 100 and len(rest) == 400
    assert np.array_equal(held.images, validation_split(numbered, 100)[1].images)
    keys = lambda part: {(int(img[0, 0]), int(img[0, 1])) for img in part.images}  # noqa: E731
    assert not keys(rest) & keys(held) and len(keys(rest) | keys(held)) == 500
    full = build_dataset("digits", "train")
    config = load_config(None, ["data.source=digits", "data.val_images=100"])
    pretraining, _, _ = build_pretraining_data(config.data)
    assert len(pretraining) == len(full) - 100
    untouched, nothing = validation_split(full, 0)
    assert len(untouched) == len(full) and len(nothing) == 0
    with pytest.raises(DatasetError, match="val_images"):
        validation_split(full, len(full))
