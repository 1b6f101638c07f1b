"""Checkpoints written atomically (temporary file + rename) and loaded without unpickling code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from attmask.core.files import write_atomic

CHECKPOINT_NAME = "checkpoint.pth"
FORMAT = "attmask-checkpoint"


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` with ``torch.save`` atomically (temporary file, fsync, rename over ``path``).

    A crash at any moment leaves either the previous file or the new one, never a torn file.
    """
    return write_atomic(path, lambda stream: torch.save(state, stream))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain containers only).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a readable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise ValueError(checkpoint_read_error(path, error)) from None


def checkpoint_read_error(path: Path, error: BaseException) -> str:
    """One line saying why ``torch.load(path, weights_only=True)`` failed, without torch's advice to
    retry with ``weights_only=False`` (unsafe: unpickling may run code)."""
    size = path.stat().st_size if path.is_file() else 0
    with open(path, "rb") as stream:
        head = stream.read(4)
    text = str(error)
    if size == 0:
        return f"checkpoint {path} is empty (0 bytes): it was never written; pass another file"
    if head == b"PK\x03\x04" and ("central directory" in text or "zip archive" in text or "file_reader" in text):
        return (
            f"checkpoint {path} is truncated ({size} bytes, the end of its zip archive is missing): its "
            "write was cut off; use an earlier checkpoint"
        )
    if head != b"PK\x03\x04" and head[:1] != b"\x80" and path.suffix != ".safetensors":
        return f"{path} is not a PyTorch checkpoint (it starts with the bytes {head!r})"
    if "Weights only load failed" in text or "Unsupported global" in text:
        return (
            f"checkpoint {path} holds Python objects besides tensors and plain containers, which are not "
            "loaded because unpickling them could run code; re-save it with tensors only"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"cannot read checkpoint {path}: {first}"
