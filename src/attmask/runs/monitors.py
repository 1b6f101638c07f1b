"""The monitors a pretraining run is started with, built from its config.

The trainer takes them as callbacks (:mod:`attmask.core.callbacks`); the CLI, the experiment
runner and the benchmarks all start runs through :func:`build_monitors`, so every run monitors
the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from attmask.config import Config
from attmask.core.callbacks import Callback
from attmask.data.resumable import mix_seed
from attmask.engine.data import crop_config
from attmask.eval.knn_monitor import KNNMonitor
from attmask.methods import build_method
from attmask.viz.figure_monitor import FigureMonitor

#: Seed offset of the random-initialisation baseline (``mix_seed(train.seed, 99)``).
RANDOM_INIT_STREAM = 99


def initial_backbone(config: Config) -> Callable[[], torch.nn.Module]:
    """Builds the run's architecture at a fixed random initialisation (seeded from ``train.seed``)
    and returns its evaluated backbone: the random-init k-NN baseline."""
    crops = crop_config(config.data)

    def build() -> torch.nn.Module:
        torch.manual_seed(mix_seed(config.train.seed, RANDOM_INIT_STREAM))
        return build_method(config, crops.global_size, crops.num_local).eval_backbone

    return build


def build_monitors(config: Config, run_dir: str | Path) -> list[Callback]:
    """The online k-NN monitor (``train.knn_*``) and the figure monitor (``train.figures_*``).

    Both are cheap to build (nothing is read until they are due), so they are always returned and
    decide per epoch whether to run. Features are extracted where the trained weights are.
    """
    crops = crop_config(config.data)
    knn = KNNMonitor(config, crops.global_size, initial_backbone=initial_backbone(config))
    return [knn, FigureMonitor(config, crops, Path(run_dir))]
