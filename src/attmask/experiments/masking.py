"""The masking ablation of AttMask (Table 1, Table 2, Fig. 4) at small scale.

Every arm (masking strategy) is pretrained with iBOT under one shared recipe and each seed,
then its teacher is evaluated on frozen [CLS] features (weighted k-NN, few-shot k-NN, linear
probe). A data-fraction sweep repeats chosen arms on smaller training sets. Layout of ``out``::

    cells/<cell>.json   one result per finished cell (and init-s<seed>.json: random init)
    runs/<cell>/        the pretraining run folders (checkpoint, log, config)
    results.json        every result plus the aggregated tables and the environment
    results.md          the tables (mean +- std over seeds)
    figures/*.png       k-NN vs epoch, data-fraction sweep, main table
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from attmask.config import Config, load_config
from attmask.core.checkpoint import CHECKPOINT_NAME
from attmask.core.distributed import resolve_device
from attmask.core.environment import environment
from attmask.core.files import write_atomic
from attmask.engine.data import crop_config
from attmask.experiments.cells import Evaluator, cached_result, evaluate_initial, pretrain_and_evaluate, settings_key
from attmask.experiments.config import ARMS, Cell, ExperimentConfig, arm_notes, plan_cells
from attmask.experiments.figures import draw_experiment_figures
from attmask.experiments.summary import summarize, write_markdown


@dataclass
class MaskingExperiment:
    """The ablation of one experiment config in one output folder.

    Attributes:
        config: arms, seeds, fractions, evaluation.
        preset: the pretraining preset shared by every cell.
        out: output folder (resumed when it holds results).
        overrides: pretraining overrides for every cell (after ``config.pretrain.overrides``).
        progress: show the trainer's progress bars.
    """

    config: ExperimentConfig
    preset: Path
    out: Path
    overrides: list[str] = field(default_factory=list)
    progress: bool = False

    def pretrain_config(self, cell: Cell | None = None) -> Config:
        """The resolved pretraining config of ``cell`` (None: the shared recipe)."""
        extra = cell.overrides() if cell is not None else []
        switches = ["train.knn_baseline=false", f"train.progress={str(self.progress).lower()}"]
        return load_config(self.preset, self.config.pretrain.overrides + self.overrides + extra + switches)

    def cells(self) -> tuple[list[Cell], list[Cell]]:
        """``(main cells, data-sweep cells)``."""
        return plan_cells(self.config, self.pretrain_config().data.subset)

    def _init_config(self, seed: int) -> Config:
        return self.pretrain_config(Cell(self.config.arms[0], seed, self.pretrain_config().data.subset))

    def status(self) -> list[tuple[str, str]]:
        """``(cell name, done | started | pending)`` of every cell in run order."""
        main, sweep = self.cells()
        names = [f"init-s{seed}" for seed in self.config.seeds] + [cell.name for cell in main + sweep]
        rows = []
        for name in names:
            if (self.out / "cells" / f"{name}.json").is_file():
                rows.append((name, "done"))
            elif (self.out / "runs" / name / CHECKPOINT_NAME).is_file():
                rows.append((name, "started"))
            else:
                rows.append((name, "pending"))
        return rows

    def finished(self) -> tuple[dict[int, dict], dict[Cell, dict], list[Cell]]:
        """``(random-init results by seed, results by cell, main cells)`` already on disk."""
        main, sweep = self.cells()
        folder = self.out / "cells"
        inits = {
            seed: json.loads((folder / f"init-s{seed}.json").read_text())
            for seed in self.config.seeds
            if (folder / f"init-s{seed}.json").is_file()
        }
        results = {
            cell: json.loads((folder / f"{cell.name}.json").read_text())
            for cell in main + sweep
            if (folder / f"{cell.name}.json").is_file()
        }
        return inits, results, main

    def run(self, log: Callable[[str], None] = print) -> dict[str, Any]:
        """Run every unfinished cell, then write the tables and figures; returns the summary."""
        shared = self.pretrain_config()
        if shared.train.num_threads > 0:  # as the trainer will: every cell evaluated alike
            torch.set_num_threads(shared.train.num_threads)
        device = resolve_device(shared.train.device)
        evaluator = Evaluator.build(
            self.config.eval, shared.data.source, shared.data.data_dir, crop_config(shared.data).global_size, device
        )
        main, sweep = self.cells()
        todo = len(self.config.seeds) + len(main) + len(sweep)
        done = 0
        inits = {}
        for seed in self.config.seeds:
            done += 1
            config = self._init_config(seed)
            path = self.out / "cells" / f"init-s{seed}.json"
            inits[seed] = self._cell(
                path,
                config,
                evaluator,
                f"[{done}/{todo}] random init, seed {seed}",
                lambda c=config: evaluate_initial(c, evaluator),
                log,
            )
        results = {}
        for cell in main + sweep:
            done += 1
            config = self.pretrain_config(cell)
            label = (
                f"[{done}/{todo}] {ARMS[cell.arm][0]}, seed {cell.seed}, data {cell.subset}, "
                f"{config.optim.epochs} epochs"
            )
            results[cell] = self._cell(
                self.out / "cells" / f"{cell.name}.json",
                config,
                evaluator,
                label,
                lambda c=cell, cfg=config: pretrain_and_evaluate(c, cfg, self.out / "runs" / c.name, evaluator),
                log,
            )
        return self.report(inits, results, main, device)

    def _cell(
        self,
        path: Path,
        config: Config,
        evaluator: Evaluator,
        label: str,
        compute: Callable[[], dict[str, Any]],
        log: Callable[[str], None],
    ) -> dict[str, Any]:
        start = time.perf_counter()
        if not path.is_file():
            log(f"{label} ...")
        result, computed = cached_result(path, settings_key(config, evaluator.spec), compute)
        metrics = result["metrics"]
        state = f"done in {time.perf_counter() - start:.0f} s" if computed else "already done"
        log(f"{label}: k-NN {metrics['knn_top1']:.2f}%, linear {metrics['linear_top1']:.2f}% ({state})")
        return result

    def report(
        self, inits: dict[int, dict], results: dict[Cell, dict], main: list[Cell], device: Any
    ) -> dict[str, Any]:
        """Aggregate, write ``results.json``, ``results.md`` and the figures."""
        shared = self.pretrain_config()
        summary = summarize(self.config, inits, results, main)
        summary["environment"] = environment(device)
        summary["experiment"] = asdict(self.config)
        summary["pretrain_preset"] = str(self.preset)
        summary["pretrain_preset_name"] = self.preset.name
        summary["pretrain_shared"] = {
            "epochs": shared.optim.epochs,
            "subset": shared.data.subset,
            "arch": shared.model.arch,
            "depth": shared.model.depth,
            "patch_size": shared.model.patch_size,
            "source": shared.data.source,
        }
        crops = crop_config(shared.data)
        tokens = (crops.global_size // shared.model.patch_size) ** 2
        summary["notes"] = arm_notes(self.config.arms, tokens, shared.masking.show_ratio)
        summary["figures"] = [
            str(p.relative_to(self.out)) for p in draw_experiment_figures(summary, self.out / "figures")
        ]
        write_atomic(self.out / "results.json", lambda s: s.write(json.dumps(summary, indent=1).encode()))
        text = write_markdown(summary)
        write_atomic(self.out / "results.md", lambda s: s.write(text.encode()))
        return summary
