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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from attmask.config import Config, load_config
from attmask.core.distributed import resolve_device
from attmask.core.environment import device_name, environment, running_commit
from attmask.core.files import write_atomic
from attmask.core.lock import FolderBusyError, file_lock, folder_lock, lock_holder
from attmask.core.repository import portable_path
from attmask.engine.data import crop_config
from attmask.engine.resume import TrainingError
from attmask.experiments.cells import (
    Evaluator,
    evaluate_initial,
    evaluate_pixels,
    pixel_settings,
    pretrain_and_evaluate,
)
from attmask.experiments.config import ExperimentConfig
from attmask.experiments.figures import draw_experiment_figures
from attmask.experiments.plan import Cell, CellPlan, plan_cells, table_specs
from attmask.experiments.progress import (
    PIXELS,
    CellSelection,
    Estimate,
    Finished,
    InitCell,
    PendingCell,
    TimedCell,
    cell_lock,
    cell_state,
    estimate,
    read_finished,
)
from attmask.experiments.report import write_markdown
from attmask.experiments.run_log import logged_position
from attmask.experiments.stored import cached_result, settings_key
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
            extra = tuple(spec.overrides)
            inits += [
                InitCell(f"init-{prefix}-s{s}", prefix, s, Cell(spec.arms[0], s, subset, prefix, extra))
                for s in spec.seeds
            ]
        return inits

    def status(self) -> list[tuple[str, str]]:
        """``(cell name, done | running | started | pending)`` of every cell in run order; running:
        a process holds the cell's lock now."""
        names = [PIXELS] if self.config.pixels else []
        names += [init.name for init in self.init_cells()] + [cell.name for cell in self.cells().all()]
        return [(name, cell_state(self.out, name)) for name in names]

    def device(self) -> str:
        """The device the cells run on here, with the recipe's threads (:func:`device_name`)."""
        shared = self.pretrain_config()
        return device_name(resolve_device(shared.train.device), shared.train.num_threads or None)

    def time_left(self, computing: bool = False) -> Estimate:
        """Expected time of the unfinished pretraining cells in :attr:`selection`, from the
        finished cells' stored times less their stalls (:func:`~attmask.experiments.progress.estimate`,
        :func:`~attmask.experiments.run_log.stalled_seconds`), a cell in
        progress counting the fraction its log has left; its lanes: the cells other processes
        hold now, plus this process when ``computing``."""
        timed, pending, lanes = [], [], int(computing)
        for cell in self.cells().all():
            path = self.out / "cells" / f"{cell.name}.json"
            if path.is_file():
                stored = json.loads(path.read_text())
                seconds = sum(stored["seconds"].values()) - stored.get("stalled_seconds", 0.0)  # none: older cells
                timed.append(TimedCell(cell.table, stored.get("device", ""), seconds, int(stored.get("steps", 0))))
            elif cell.name in self.selection:
                state = cell_state(self.out, cell.name)
                pending.append(self._pending(cell, state))
                lanes += state == "running"
        return replace(estimate(timed, pending, self.device()), lanes=max(lanes, 1))

    def _pending(self, cell: Cell, state: str) -> PendingCell:
        """``cell`` unfinished: the fraction of its pretraining left by its log (1.0 when the log
        cannot tell) and, when it is ``running`` here, its recent pace."""
        if state not in ("running", "started"):
            return PendingCell(cell.table)
        position = logged_position(self.out / "runs" / cell.name)
        left = position.left(self.pretrain_config(cell).optim.epochs) if position else None
        pace = position.steps_per_second if position and state == "running" else None
        return PendingCell(cell.table, 1.0 if left is None else left, pace)

    def finished(self) -> Finished:
        """Every result on disk (:func:`~attmask.experiments.progress.read_finished`)."""
        return read_finished(self.out / "cells", self.cells(), self.init_cells(), self.config.pixels)

    def run(self, log: Callable[[str], None] = print) -> dict[str, Any]:
        """Run every unfinished cell, then write the tables and figures from every finished cell
        in ``out``; returns the summary.

        Each cell is computed under its own lock (:func:`~attmask.experiments.progress.cell_lock`):
        processes sharing a folder (lanes, e.g. the same command twice on one thread each) skip the
        cells another one holds, and the last to finish writes the tables with every cell. After
        each pretrained cell, the expected time of the rest is logged (:meth:`time_left`).

        Raises:
            FolderBusyError: ``out`` is an ``attmask pretrain`` run folder in use (experiments share it).
            ValueError: a pattern of :attr:`selection` matches no cell.
        """
        selected = len(self.selected())
        running_commit()  # the code's commit, as of now: the cells it writes hours later say this one
        with folder_lock(self.out, "attmask experiment", shared=True):
            (self.out / "runs").mkdir(exist_ok=True)  # the cells' locks and run folders
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
        log(f"{todo} cells in all{chosen}; pretraining left: {self.time_left(computing=True).text()}")
        self._reference_rows(shared, evaluator, todo, log)
        failed = self._pretrain_cells(plan, evaluator, references, todo, log)
        with file_lock(self.out / "runs" / "report.lock", "attmask experiment", wait=True):  # one writer at a time
            return self.report(replace(self.finished(), failed=failed), device)  # every cell on disk: other lanes' too

    def _reference_rows(self, shared: Config, evaluator: Evaluator, todo: int, log: Callable[[str], None]) -> None:
        """The raw-pixel row (unless switched off) and the random-init rows, computed or read."""
        pixels_path = self.out / "cells" / f"{PIXELS}.json"
        if self.config.pixels and (PIXELS in self.selection or pixels_path.is_file()):
            self._cell(
                pixels_path,
                pixel_settings(shared, evaluator.spec, crop_config(shared.data).global_size),
                f"[1/{todo}] raw pixels",
                lambda: evaluate_pixels(evaluator),
                log,
            )
        for done, init in enumerate(self.init_cells(), 1 + int(self.config.pixels)):
            path = self.out / "cells" / f"{init.name}.json"
            if init.name not in self.selection and not path.is_file():
                continue
            config = self.pretrain_config(init.cell)
            self._cell(
                path,
                settings_key(config, evaluator.spec),
                f"[{done}/{todo}] random init{' of ' + init.table if init.table else ''}, seed {init.seed}",
                lambda c=config: evaluate_initial(c, evaluator),
                log,
            )

    def _pretrain_cells(
        self, plan: CellPlan, evaluator: Evaluator, before: int, todo: int, log: Callable[[str], None]
    ) -> dict[str, str]:
        """Every pretraining cell, computed or read; returns ``{failed cell: error}``.

        A cell whose training fails (NaN loss, a refused resume) is logged and skipped, so one bad
        cell does not idle an unattended run; the rest go on and the run reports the failures.
        Running again retries a failed cell from its last checkpoint.
        """
        failed = {}
        for done, cell in enumerate(plan.all(), before + 1):
            config = self.pretrain_config(cell)
            label = f"[{done}/{todo}] {cell.label(config.optim.epochs)}"
            path = self.out / "cells" / f"{cell.name}.json"
            if not path.is_file() and cell.name not in self.selection:
                continue
            computed = False
            try:
                computed = self._cell(
                    path,
                    settings_key(config, evaluator.spec),
                    label,
                    lambda c=cell, cfg=config: pretrain_and_evaluate(c, cfg, self.out / "runs" / c.name, evaluator),
                    log,
                )
            except TrainingError as error:
                failed[cell.name] = str(error)
                log(f"{label}: FAILED, going on with the next cell: {error}")
            if computed and (left := self.time_left(computing=True)).pending:  # news after a timed cell only
                log(f"expected pretraining time left: {left.text()}")
        return failed

    def _cell(
        self,
        path: Path,
        settings: dict[str, Any],
        label: str,
        compute: Callable[[], dict[str, Any]],
        log: Callable[[str], None],
    ) -> bool:
        """Read the cell stored at ``path`` (its settings checked), else compute it under its
        lock; a cell whose lock another process holds is skipped (that process computes it).
        Returns whether this process computed it."""
        start = time.perf_counter()
        if not path.is_file():
            log(f"{label} ...")
        lock = cell_lock(self.out, path.stem)
        try:
            with file_lock(lock, "attmask experiment"):
                result, computed = cached_result(path, settings, compute)  # it may have landed meanwhile
        except FolderBusyError:  # its holder may end in between: then say so without a pid
            pid, _, what = (lock_holder(lock) or "? another process").partition(" ")
            log(f"{label}: skipped, {what} (pid {pid}) is computing it")
            return False
        metrics = result["metrics"]
        state = f"done in {time.perf_counter() - start:.0f} s" if computed else "already done"
        log(f"{label}: k-NN {metrics['knn_top1']:.2f}%, linear {metrics['linear_top1']:.2f}% ({state})")
        return computed

    def report(self, finished: Finished, device: Any) -> dict[str, Any]:
        """Aggregate, write ``results.json``, ``results.md`` and the figures."""
        shared = self.pretrain_config()
        summary = summarize(self.config, finished.inits, finished.results, finished.plan, finished.pixels)
        summary["environment"] = environment(device)
        summary["experiment"] = asdict(self.config)
        summary["pretrain_preset"] = portable_path(self.preset)
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
