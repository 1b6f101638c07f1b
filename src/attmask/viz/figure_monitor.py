"""Attention / mask figures of fixed images drawn during pretraining (rank 0).

Every ``train.figures_every_epochs`` epochs (and after the last one) the teacher's figures of
the first test image of each class of the pretraining data set go to
``run_dir/figures/epoch_XXXX/`` and, when TensorBoard is installed, into its image tab. Methods
that reconstruct pixels (MAE) add ``reconstruction.png`` of the same images, masks seeded alike.
A training callback (:class:`attmask.engine.callbacks.Callback`): the CLI hands it to the trainer.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attmask.config import Config
from attmask.core.callbacks import EpochEnd
from attmask.core.schedules import epoch_due
from attmask.data.augment import MultiCropConfig
from attmask.methods import PretrainingMethod
from attmask.viz.figures import draw_figures, sample_images
from attmask.viz.reconstruction import reconstruction_figure


class FigureMonitor:
    """Draws the figures when due.

    Args:
        config: reads ``data.source``/``data.data_dir`` and ``train.figures_every_epochs`` /
            ``train.figure_images``.
        crops: the run's crop settings (the teacher sees ``global_size`` crops; ``mean`` / ``std``
            undo the normalisation of reconstructions).
        run_dir: the run folder.
    """

    def __init__(self, config: Config, crops: MultiCropConfig, run_dir: Path) -> None:
        self.config, self.crops, self.run_dir = config, crops, Path(run_dir)
        self.img_size = crops.global_size
        self._images: list[tuple[str, Image.Image]] | None = None

    def due(self, epoch: int) -> bool:
        """True after every ``figures_every_epochs`` epochs and after the last one."""
        return epoch_due(self.config.train.figures_every_epochs, epoch, self.config.optim.epochs)

    def on_epoch_end(self, event: EpochEnd) -> dict[str, float]:
        """Draw the figures when due, on rank 0 ; logs nothing."""
        if self.due(event.epoch) and event.is_main:
            method = event.method
            self.draw(method.eval_backbone, event.epoch, event.writer, method)
        return {}

    def on_train_end(self, event: EpochEnd) -> dict[str, float]:
        """Nothing after the last epoch (its figures were drawn by :meth:`on_epoch_end`)."""
        return {}

    def _fixed_images(self) -> list[tuple[str, Image.Image]]:
        if self._images is None:
            data = self.config.data
            self._images = sample_images(data.source, self.config.train.figure_images, data.data_dir)
        return self._images

    def draw(
        self,
        backbone: torch.nn.Module,
        epoch: int,
        writer: object | None = None,
        method: PretrainingMethod | None = None,
    ) -> list[Path]:
        """Write the figures of ``epoch``; also to TensorBoard when ``writer`` is given.

        ``method``: the pretraining method; when it ``reconstructs``, its reconstruction figure too.
        """
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

    def _draw_reconstruction(
        self, method: PretrainingMethod, images: list[tuple[str, Image.Image]], path: Path, epoch: int
    ) -> Path:
        title = f"{self.config.train.method} after epoch {epoch + 1}"
        return reconstruction_figure(method, images, self.crops, path, title, self.config.train.seed)
