"""Figures of a finished run read from its checkpoint (the report's and ``attmask visualize``'s)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from attmask.engine.data import crop_config
from attmask.engine.restore import load_method
from attmask.viz.reconstruction import reconstruction_figure


def run_reconstruction(
    checkpoint: str | Path,
    images: Sequence[tuple[str, Image.Image]],
    path: str | Path,
    title: str = "{method} of {name}",
    seed: int = 0,
    required: bool = False,
) -> Path | None:
    """The reconstruction figure of a pixel method's checkpoint or run folder (masks seeded by
    ``seed``) at ``path``.

    Args:
        title: format string; ``{method}`` is the run's method, ``{name}`` the checkpoint's name.
        required: raise the method's one-line ``ValueError`` when it does not reconstruct pixels
            (default: return None then).
    """
    method, config = load_method(checkpoint)
    if not method.reconstructs and not required:
        return None
    title = title.format(method=config.train.method, name=Path(checkpoint).name)
    return reconstruction_figure(method, images, crop_config(config.data), path, title, seed)
