"""Fashion-MNIST in IDX format: found in an explicit folder, ``$ATTMASK_DATA_DIR``, Debian's
package ``dataset-fashion-mnist``, or downloaded by torchvision when online.

IDX: a big-endian header (2 zero bytes, type code 0x08 = unsigned byte, number of dimensions,
then one 4-byte size per dimension) followed by the raw uint8 values; images start at byte 16
and labels at byte 8 (LeCun et al., 1998; Xiao et al., 2017).
"""

from __future__ import annotations

import gzip
import os
import socket
from pathlib import Path

import numpy as np

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_HOST = "ossci-datasets.s3.amazonaws.com"  # torchvision's first Fashion-MNIST mirror
HOW_TO_GET = "apt-get install dataset-fashion-mnist, or pass --data-dir/ATTMASK_DATA_DIR with the IDX files"
_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes, gzipped or not.

    Returns:
        uint8 array of the header's shape, e.g. ``(M, 28, 28)`` images or ``(M,)`` labels.

    Raises:
        ValueError: not an IDX file of unsigned bytes, or truncated.
    """
    with open(path, "rb") as stream:
        data = stream.read()
    if data[:2] == b"\x1f\x8b":  # gzip magic, whatever the file name says
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise ValueError(f"{path} is a damaged gzip file ({error})") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) - header != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {dims}, found {len(data) - header} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_idx_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(images (M, H, W) uint8, labels (M,) int64)`` from ``folder`` or ``folder/fashion-mnist``.

    Returns None when neither folder holds both files of the split.
    """
    for base in (folder, folder / "fashion-mnist"):
        images = _file(base, f"{_PREFIX[split]}-images-idx3-ubyte")
        labels = _file(base, f"{_PREFIX[split]}-labels-idx1-ubyte")
        if images and labels:
            pixels, targets = read_idx(images), read_idx(labels).astype(np.int64)
            if pixels.ndim != 3 or len(pixels) != len(targets):
                raise ValueError(f"{images} and {labels} do not match: {pixels.shape} vs {targets.shape}")
            return pixels, targets
    return None


def _online(host: str = DOWNLOAD_HOST, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _download(split: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not _online():
        return None
    try:
        from torchvision.datasets import FashionMNIST

        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attmask"
        dataset = FashionMNIST(str(root), train=split == "train", download=True)
        return dataset.data.numpy(), dataset.targets.numpy().astype(np.int64)
    except Exception:  # blocked mirror, proxy, disk full: fall through to the one-line error
        return None


def find_fashion_mnist(split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A split of Fashion-MNIST from the first place that has it.

    Order: ``data_dir``, ``$ATTMASK_DATA_DIR``, Debian's folder, torchvision's download.

    Returns:
        ``(images uint8 (M, 28, 28), labels int64 (M,))``, M = 60000 (train) or 10000 (test).

    Raises:
        FileNotFoundError: found nowhere, or an explicit ``data_dir`` lacks the files (one line).
        ValueError: a found file is not valid IDX.
    """
    folders = [Path(p).expanduser() for p in (data_dir, os.environ.get("ATTMASK_DATA_DIR")) if p]
    for folder in [*folders, DEBIAN_DIR]:
        found = load_idx_split(folder, split)
        if found is not None:
            return found
        if data_dir and folder == folders[0]:
            raise FileNotFoundError(
                f"no Fashion-MNIST IDX files ({_PREFIX[split]}-images-idx3-ubyte[.gz] and "
                f"{_PREFIX[split]}-labels-idx1-ubyte[.gz]) in {folder}; fix --data-dir or drop it"
            )
    found = _download(split)
    if found is None:
        raise FileNotFoundError(f"Fashion-MNIST not found: {HOW_TO_GET}")
    return found
