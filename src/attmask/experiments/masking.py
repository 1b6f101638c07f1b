"""The masking ablation of AttMask (Table 1, Table 2, Table 3, Fig. 4) at small scale.

Every arm (masking strategy) is pretrained with iBOT under one shared recipe and each seed,
then its teacher is evaluated on frozen features (weighted k-NN, few-shot k-NN, linear probe;
[CLS], and the mean patch token when ``eval.features`` asks). Extra tables repeat arms under
changed settings (DINO: Table 3; a finer patch grid for AttMask-Hint); a data-fraction sweep
repeats chosen arms on smaller training sets. Layout of ``out``::

    cells/<cell>.json   one result per finished cell (init-[<table>-]s<seed>.json: random init;
                        pixels.json: the raw pixels, the row a learned feature must beat)
    runs/<cell>/        the pretraining run folders (checkpoint, log, config, segments.jsonl:
                        the commit and machine of every process that trained the cell)
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
from attmask.core.environment import device_name, environment
from attmask.core.files import write_atomic
from attmask.core.lock import folder_lock
from attmask.engine.data import crop_config
from attmask.engine.resume import TrainingError
from attmask.experiments.cells import (
    Evaluator,
    cached_result,
    evaluate_initial,
    evaluate_pixels,
    pixel_settings,
    pretrain_and_evaluate,
    settings_key,
)
from attmask.experiments.config import Cell, CellPlan, ExperimentConfig, plan_cells, table_specs
from attmask.experiments.figures import draw_experiment_figures
from attmask.experiments.progress import PIXELS, CellSelection, Estimate, Finished, InitCell, TimedCell, estimate
from attmask.experiments.report import write_markdown
from attmask.experiments.summary import recipe, recipe_notes, summarize


@dataclass
class MaskingExperiment:
    """The ablation of one experiment config in one output folder.

    Attributes:
        config: arms, seeds, fractions, evaluation.
        preset: the pretraining preset shared by every cell.
        out: output folder (resumed when it holds results).
        overrides: pretraining overrides for every cell (after ``config.pretrain.overrides``).
        progress: show the trainer's progress bars.
        selection: the cells this run computes (default: all); the others are only read.
    """

    config: ExperimentConfig
    preset: Path
    out: Path
    overrides: list[str] = field(default_factory=list)
    progress: bool = False
    selection: CellSelection = field(default_factory=CellSelection)

    def pretrain_config(self, cell: Cell | None = None) -> Config:
        """The resolved pretraining config of ``cell`` (None: the shared recipe)."""
        extra = cell.overrides() if cell is not None else []
        switches = ["train.knn_baseline=false", f"train.progress={str(self.progress).lower()}"]
        return load_config(self.preset, self.config.pretrain.overrides + self.overrides + extra + switches)

    def cells(self) -> CellPlan:
        """Every cell: main table, extra tables, data sweep."""
        return plan_cells(self.config, self.pretrain_config().data.subset)

    def init_cells(self) -> list[InitCell]:
        """The random-init evaluations: one per seed of the main table and of each extra table."""
        subset = self.pretrain_config().data.subset
        inits = [
            InitCell(f"init-s{seed}", "", seed, Cell(self.config.arms[0], seed, subset)) for seed in self.config.seeds
        ]
        for prefix, spec in table_specs(self.config).items():
            inits += [
                InitCell(
                    f"init-{prefix}-s{seed}",
                    prefix,
                    seed,
                    Cell(spec.arms[0], seed, subset, prefix, tuple(spec.overrides)),
                )
                for seed in spec.seeds
            ]
        return inits

    def status(self) -> list[tuple[str, str]]:
        """``(cell name, done | started | pending)`` of every cell in run order."""
        names = [PIXELS] if self.config.pixels else []
        names += [init.name for init in self.init_cells()] + [cell.name for cell in self.cells().all()]
        rows = []
        for name in names:
            if (self.out / "cells" / f"{name}.json").is_file():
                rows.append((name, "done"))
            elif (self.out / "runs" / name / CHECKPOINT_NAME).is_file():
                rows.append((name, "started"))
            else:
                rows.append((name, "pending"))
        return rows

    def device(self) -> str:
        """The device the cells run on here, with the recipe's threads (:func:`device_name`)."""
        shared = self.pretrain_config()
        return device_name(resolve_device(shared.train.device), shared.train.num_threads or None)

    def time_left(self) -> Estimate:
        """Expected time of the unfinished pretraining cells in :attr:`selection`, from the
        finished cells' stored times (:func:`~attmask.experiments.progress.estimate`)."""
        timed, pending = [], []
        for cell in self.cells().all():
            path = self.out / "cells" / f"{cell.name}.json"
            if path.is_file():
                stored = json.loads(path.read_text())
                timed.append(TimedCell(cell.table, stored.get("device", ""), sum(stored["seconds"].values())))
            elif cell.name in self.selection:
                pending.append(cell.table)
        return estimate(timed, pending, self.device())

    def finished(self) -> Finished:
        """Every result on disk."""
        plan = self.cells()
        folder = self.out / "cells"
        pixels_path = folder / f"{PIXELS}.json"
        pixels = json.loads(pixels_path.read_text()) if self.config.pixels and pixels_path.is_file() else None
        inits: dict[str, dict[int, dict]] = {}
        for init in self.init_cells():
            path = folder / f"{init.name}.json"
            if path.is_file():
                inits.setdefault(init.table, {})[init.seed] = json.loads(path.read_text())
        results = {
            cell: json.loads((folder / f"{cell.name}.json").read_text())
            for cell in plan.all()
            if (folder / f"{cell.name}.json").is_file()
        }
        return Finished(pixels, inits, results, plan)

    def run(self, log: Callable[[str], None] = print) -> dict[str, Any]:
        """Run every unfinished cell, then write the tables and figures; returns the summary.

        After each pretrained cell, the expected time of the rest is logged (:meth:`time_left`).

        Raises:
            FolderBusyError: another process is running an experiment in ``out``.
            ValueError: a pattern of :attr:`selection` matches no cell.
        """
        selected = len(self.selected())
        with folder_lock(self.out, "attmask experiment"):
            return self._run(log, selected)

    def selected(self) -> list[str]:
        """Names of the cells :attr:`selection` picks, in run order.

        Raises:
            ValueError: a pattern matches no cell.
        """
        names = [name for name, _ in self.status()]
        self.selection.check(names)
        return [name for name in names if name in self.selection]

    def _run(self, log: Callable[[str], None], selected: int) -> dict[str, Any]:
        shared = self.pretrain_config()
        if shared.train.num_threads > 0:  # as the trainer will: every cell evaluated alike
            torch.set_num_threads(shared.train.num_threads)
        device = resolve_device(shared.train.device)
        evaluator = Evaluator.build(
            self.config.eval, shared.data.source, shared.data.data_dir, crop_config(shared.data).global_size, device
        )
        plan = self.cells()
        references = int(self.config.pixels) + len(self.init_cells())
        todo = references + len(plan.all())
        chosen = f" ({selected} selected)" if self.selection.patterns else ""
        log(f"{todo} cells in all{chosen}; pretraining left: {self.time_left().text()}")
        pixels, inits = self._reference_rows(shared, evaluator, todo, log)
        results, failed = self._pretrain_cells(plan, evaluator, references, todo, log)
        return self.report(Finished(pixels, inits, results, plan, failed), device)

    def _reference_rows(
        self, shared: Config, evaluator: Evaluator, todo: int, log: Callable[[str], None]
    ) -> tuple[dict[str, Any] | None, dict[str, dict[int, dict]]]:
        """The raw-pixel row (None when switched off) and the random-init rows, computed or read."""
        pixels = None
        pixels_path = self.out / "cells" / f"{PIXELS}.json"
        if self.config.pixels and (PIXELS in self.selection or pixels_path.is_file()):
            pixels = self._cell(
                pixels_path,
                pixel_settings(shared, evaluator.spec, crop_config(shared.data).global_size),
                f"[1/{todo}] raw pixels",
                lambda: evaluate_pixels(evaluator),
                log,
            )
        inits: dict[str, dict[int, dict]] = {}
        for done, init in enumerate(self.init_cells(), 1 + int(self.config.pixels)):
            path = self.out / "cells" / f"{init.name}.json"
            if init.name not in self.selection and not path.is_file():
                continue
            config = self.pretrain_config(init.cell)
            inits.setdefault(init.table, {})[init.seed] = self._cell(
                path,
                settings_key(config, evaluator.spec),
                f"[{done}/{todo}] random init{' of ' + init.table if init.table else ''}, seed {init.seed}",
                lambda c=config: evaluate_initial(c, evaluator),
                log,
            )
        return pixels, inits

    def _pretrain_cells(
        self, plan: CellPlan, evaluator: Evaluator, before: int, todo: int, log: Callable[[str], None]
    ) -> tuple[dict[Cell, dict], dict[str, str]]:
        """Every pretraining cell, computed or read: ``(results by cell, failed cell -> error)``.

        A cell whose training fails (NaN loss, a refused resume) is logged and skipped, so one bad
        cell does not idle an unattended run; the rest go on and the run reports the failures.
        Running again retries a failed cell from its last checkpoint.
        """
        results, failed = {}, {}
        for done, cell in enumerate(plan.all(), before + 1):
            config = self.pretrain_config(cell)
            label = f"[{done}/{todo}] {cell.label(config.optim.epochs)}"
            path = self.out / "cells" / f"{cell.name}.json"
            fresh = not path.is_file()
            if fresh and cell.name not in self.selection:
                continue
            try:
                results[cell] = self._cell(
                    path,
                    settings_key(config, evaluator.spec),
                    label,
                    lambda c=cell, cfg=config: pretrain_and_evaluate(c, cfg, self.out / "runs" / c.name, evaluator),
                    log,
                )
            except TrainingError as error:
                failed[cell.name] = str(error)
                log(f"{label}: FAILED, going on with the next cell: {error}")
            left = self.time_left()
            if fresh and left.pending:
                log(f"expected time left: {left.text()}")
        return results, failed

    def _cell(
        self,
        path: Path,
        settings: dict[str, Any],
        label: str,
        compute: Callable[[], dict[str, Any]],
        log: Callable[[str], None],
    ) -> dict[str, Any]:
        start = time.perf_counter()
        if not path.is_file():
            log(f"{label} ...")
        result, computed = cached_result(path, settings, compute)
        metrics = result["metrics"]
        state = f"done in {time.perf_counter() - start:.0f} s" if computed else "already done"
        log(f"{label}: k-NN {metrics['knn_top1']:.2f}%, linear {metrics['linear_top1']:.2f}% ({state})")
        return result

    def report(self, finished: Finished, device: Any) -> dict[str, Any]:
        """Aggregate, write ``results.json``, ``results.md`` and the figures."""
        shared = self.pretrain_config()
        summary = summarize(self.config, finished.inits, finished.results, finished.plan, finished.pixels)
        summary["environment"] = environment(device)
        summary["experiment"] = asdict(self.config)
        summary["pretrain_preset"] = str(self.preset)
        summary["pretrain_preset_name"] = self.preset.name
        summary["pretrain_shared"] = recipe(shared)
        summary["notes"] = recipe_notes(self.config, shared)
        states = self.status()
        summary["progress"] = {
            "done": sum(state == "done" for _, state in states),
            "total": len(states),
            "left": [name for name, state in states if state != "done"],
            "time_left": self.time_left().text(),
            "failed": finished.failed,
        }
        summary["figures"] = [
            str(p.relative_to(self.out)) for p in draw_experiment_figures(summary, self.out / "figures")
        ]
        write_atomic(self.out / "results.json", lambda s: s.write(json.dumps(summary, indent=1).encode()))
        text = write_markdown(summary)
        write_atomic(self.out / "results.md", lambda s: s.write(text.encode()))
        return summary
