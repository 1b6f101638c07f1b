"""Checkpoints written atomically (temporary file + rename) and loaded without unpickling code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from attmask.files import write_atomic
from attmask.models.checkpoints import checkpoint_read_error

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


def check_compatible(saved_config: dict, config: dict, path: Path) -> None:
    """Refuse to resume a run whose model differs from the requested one."""
    for section in ("model", "head"):
        saved, wanted = saved_config.get(section, {}), config.get(section, {})
        changed = sorted(k for k in wanted if saved.get(k) != wanted.get(k) and k != "drop_path_rate")
        if changed:
            key = changed[0]
            raise ValueError(
                f"{path} holds a checkpoint of another architecture ({section}.{key}: "
                f"{saved.get(key)!r} vs {wanted.get(key)!r}); use a new --out folder or the same config"
            )
    for section, keys in (("recon", ("decoder_dim", "decoder_depth", "decoder_heads")),
                          ("lut", ("hidden_dim", "out_dim"))):
        saved, wanted = saved_config.get(section), config.get(section, {})
        changed = [k for k in keys if saved is not None and saved.get(k) != wanted.get(k)]
        if changed:
            raise ValueError(f"{path} holds a checkpoint with {section}.{changed[0]}={saved.get(changed[0])!r}, "
                             f"not {wanted.get(changed[0])!r}; use a new --out folder or the same config")
    if saved_config.get("train", {}).get("method") != config.get("train", {}).get("method"):
        raise ValueError(
            f"{path} holds a checkpoint of method {saved_config['train']['method']!r}; "
            "use a new --out folder"
        )
