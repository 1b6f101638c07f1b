"""Fashion-MNIST's IDX files: damaged, truncated or mismatched files are one line naming the file;
the torchvision download is the last place looked, and its failure is the usual one-line error."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from attmask.data import idx as idx_module
from attmask.data.datasets import DatasetError, build_dataset
from attmask.data.idx import find_fashion_mnist, read_idx


def _idx(values: np.ndarray) -> bytes:
    header = b"\x00\x00\x08" + bytes([values.ndim]) + b"".join(d.to_bytes(4, "big") for d in values.shape)
    return header + values.astype(np.uint8).tobytes()


def _write_split(folder: Path, images: np.ndarray, labels: np.ndarray, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, values in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        data = _idx(values)
        (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)


def test_gzipped_and_plain_files_read_the_same(tmp_path: Path) -> None:
    images, labels = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256, np.array([0, 9, 4])
    _write_split(tmp_path / "plain", images, labels)
    _write_split(tmp_path / "gz", images, labels, gz=True)
    for folder in ("plain", "gz"):
        found_images, found_labels = find_fashion_mnist("train", str(tmp_path / folder))
        np.testing.assert_array_equal(found_images, images)
        assert found_labels.tolist() == [0, 9, 4] and found_labels.dtype == np.int64


def test_damaged_truncated_and_mismatched_files_are_one_line_naming_the_file(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.gz"
    damaged.write_bytes(gzip.compress(_idx(np.zeros(10)))[:-6])
    with pytest.raises(ValueError, match=f"{damaged} is a damaged gzip file"):
        read_idx(damaged)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(_idx(np.zeros((4, 28, 28)))[:-100])
    with pytest.raises(ValueError, match=r"truncated: header says \[4, 28, 28\], found 3036 bytes"):
        read_idx(truncated)
    _write_split(tmp_path / "mismatch", np.zeros((3, 28, 28)), np.zeros(2))
    with pytest.raises(DatasetError, match=r"do not match: \(3, 28, 28\) vs \(2,\); reinstall or replace") as error:
        build_dataset("fashion-mnist", data_dir=str(tmp_path / "mismatch"))
    assert "\n" not in str(error.value)


def test_download_is_the_last_resort_and_its_failure_is_the_usual_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idx_module, "DEBIAN_DIR", tmp_path / "absent")
    monkeypatch.delenv("ATTMASK_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(idx_module, "_online", lambda *args, **kwargs: True)
    roots: list[str] = []

    class Downloaded:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            roots.append(root)
            self.data = torch.full((2, 28, 28), 7, dtype=torch.uint8)
            self.targets = torch.tensor([1, 2]) if train else torch.tensor([3, 4])

    monkeypatch.setattr("torchvision.datasets.FashionMNIST", Downloaded)
    images, labels = find_fashion_mnist("test")
    assert images.shape == (2, 28, 28) and labels.tolist() == [3, 4] and labels.dtype == np.int64
    assert roots == [str(tmp_path / "cache" / "attmask")]

    class Blocked:
        def __init__(self, *args, **kwargs) -> None:
            raise RuntimeError("File not found or corrupted.")  # what a blocked mirror gives

    monkeypatch.setattr("torchvision.datasets.FashionMNIST", Blocked)
    with pytest.raises(DatasetError, match="Fashion-MNIST not found: apt-get install dataset-fashion-mnist"):
        build_dataset("fashion-mnist")
