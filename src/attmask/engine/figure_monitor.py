"""Attention / mask figures of fixed images drawn during pretraining (rank 0).

Every ``train.figures_every_epochs`` epochs (and after the last one) the teacher's figures of
the first test image of each class of the pretraining data set go to
``run_dir/figures/epoch_XXXX/`` and, when TensorBoard is installed, into its image tab. Methods
that reconstruct pixels (MAE) add ``reconstruction.png`` of the same images, masks seeded alike.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attmask.config import Config
from attmask.engine.data import crop_config
from attmask.methods import PretrainingMethod


class FigureMonitor:
    """Draws the figures when due.

    Args:
        config: reads ``data.source``/``data.data_dir`` and ``train.figures_every_epochs`` /
            ``train.figure_images``.
        img_size: the crop size fed to the teacher (the global crop size).
        run_dir: the run folder.
    """

    def __init__(self, config: Config, img_size: int, run_dir: Path) -> None:
        self.config, self.img_size, self.run_dir = config, img_size, run_dir
        self.every = config.train.figures_every_epochs
        self._images: list[tuple[str, Image.Image]] | None = None

    def due(self, epoch: int) -> bool:
        """True after every ``figures_every_epochs`` epochs and after the last one."""
        if self.every <= 0:
            return False
        return (epoch + 1) % self.every == 0 or epoch + 1 == self.config.optim.epochs

    def _fixed_images(self) -> list[tuple[str, Image.Image]]:
        from attmask.viz.figures import sample_images

        if self._images is None:
            data = self.config.data
            self._images = sample_images(data.source, self.config.train.figure_images, data.data_dir)
        return self._images

    def draw(self, backbone: torch.nn.Module, epoch: int, writer: object | None = None,
             method: PretrainingMethod | None = None) -> list[Path]:
        """Write the figures of ``epoch``; also to TensorBoard when ``writer`` is given.

        ``method``: the pretraining method; when it ``reconstructs``, its reconstruction figure too.
        """
        from attmask.viz.figures import draw_figures

        out = self.run_dir / "figures" / f"epoch_{epoch + 1:04d}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unsplit folder: its test split is its train split
            images = self._fixed_images()
        name = method.eval_name if method is not None else "teacher"
        paths = draw_figures(backbone, images, self.img_size, out, f"{name} after epoch {epoch + 1}")
        if method is not None and method.reconstructs:
            paths.append(self._draw_reconstruction(method, images, out / "reconstruction.png", epoch))
        if writer is not None:
            for path in paths:
                with Image.open(path) as picture:
                    array = np.asarray(picture.convert("RGB"))
                writer.add_image(f"figures/{path.stem}", array, epoch + 1, dataformats="HWC")
        return paths

    def _draw_reconstruction(self, method: PretrainingMethod, images: list[tuple[str, Image.Image]],
                             path: Path, epoch: int) -> Path:
        from attmask.viz.reconstruction import draw_reconstructions, reconstruct_images

        crops = crop_config(self.config.data)
        result = reconstruct_images(method, images, self.img_size, crops.mean, crops.std, self.config.train.seed)
        return draw_reconstructions(result, crops.mean, crops.std, path,
                                    f"{self.config.train.method} after epoch {epoch + 1}", [n for n, _ in images])
