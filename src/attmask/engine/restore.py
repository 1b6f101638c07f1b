"""Rebuild a pretraining method from a run's checkpoint (for figures of the whole method).

``attmask.models.checkpoints`` loads only a backbone from any layout; this module needs the
project's own checkpoint, whose config says how to build the method around the weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from attmask.config import Config, drop_removed_keys, from_dict
from attmask.core.checkpoint import FORMAT
from attmask.engine.data import crop_config
from attmask.methods import PretrainingMethod, build_method
from attmask.models.checkpoints import read_checkpoint, resolve_checkpoint


def load_method(
    checkpoint_or_run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[PretrainingMethod, Config]:
    """The method of a pretraining checkpoint, with its weights, in eval mode on ``device``.

    Args:
        checkpoint_or_run_dir: a ``checkpoint*.pth`` written by the trainer, or its run folder.
        device: where the method goes.

    Returns:
        ``(method, config)``: built by :func:`~attmask.methods.build_method` from the saved
        config for its global crop size, then ``load_state_dict(checkpoint["method"])``.

    Raises:
        FileNotFoundError: no such file or run folder.
        ValueError: unreadable file, not a project checkpoint, or weights that do not fit (one line).
    """
    path = resolve_checkpoint(checkpoint_or_run_dir)
    checkpoint = read_checkpoint(path)
    if not (
        isinstance(checkpoint, dict)
        and checkpoint.get("format") == FORMAT
        and isinstance(checkpoint.get("method"), dict)
        and isinstance(checkpoint.get("config"), dict)
    ):
        raise ValueError(
            f"{path} is not an attmask pretraining checkpoint; reconstruction figures need "
            "a run folder of mae/simmim/mst/lut"
        )
    config = from_dict(Config, drop_removed_keys(checkpoint["config"]))
    crops = crop_config(config.data)
    method = build_method(config, crops.global_size, crops.num_local)
    try:
        method.load_state_dict(checkpoint["method"])
    except RuntimeError as error:  # missing / unexpected keys or shape mismatches, many lines
        raise ValueError(
            f"{path} does not fit the {config.train.method} method its config builds: "
            f"{str(error).strip().splitlines()[-1].strip()}"
        ) from None
    return method.to(device).eval(), config
