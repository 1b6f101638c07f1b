"""What an ablation run holds and has left: the reference rows' names, the results on disk, the
expected time of the unfinished cells."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from attmask.core.checkpoint import CHECKPOINT_NAME
from attmask.core.lock import lock_holder
from attmask.experiments.plan import Cell, CellPlan
from attmask.experiments.run_log import duration_text


@dataclass(frozen=True)
class InitCell:
    """A random-init evaluation: its result name, table prefix ("" = main), seed, and a cell of
    that table and seed whose config builds the initial weights."""

    name: str
    table: str
    seed: int
    cell: Cell


@dataclass(frozen=True)
class Estimate:
    """Expected time of the unfinished cells.

    Attributes:
        seconds: expected seconds (None before any cell is timed).
        pending: unfinished pretraining cells.
        timed: finished cells the estimate is based on.
        this_device: whether those cells were all timed on the device the rest will run on (else
            no cell was, and the estimate uses every timed cell).
        lanes: processes computing cells of the folder now; the wall time is about ``seconds / lanes``.
        speed: with no cell timed on this device, how many times faster the cells running here
            train than the timed cells did (their times are divided by it; None: not scaled).
    """

    seconds: float | None
    pending: int
    timed: int
    this_device: bool = True
    lanes: int = 1
    speed: float | None = None

    def text(self) -> str:
        """E.g. ``about 14 h 05 min for 17 cells (median of 3 timed cells, on this device)``, with
        ``; about 7 h 03 min of wall time in 2 lanes`` when several processes compute cells;
        ``none, every cell is finished`` when no cell is left."""
        cells = f"{self.pending} cell{'s' if self.pending != 1 else ''}"
        if self.pending == 0:
            return "none, every cell is finished"
        if self.seconds is None:
            return f"{cells}, not yet timed (known after the first one)"
        where = "on this device" if self.this_device else "none on this device"
        if self.speed is not None:
            where += f", scaled by the running cells' pace: {self.speed:.2f}x theirs"
        text = (
            f"about {duration_text(self.seconds)} for {cells} "
            f"(median of {self.timed} timed cell{'s' if self.timed != 1 else ''}, {where})"
        )
        return text + (
            f"; about {duration_text(self.seconds / self.lanes)} of wall time in {self.lanes} lanes"
            if self.lanes > 1
            else ""
        )


@dataclass(frozen=True)
class TimedCell:
    """A finished cell's table prefix ("" = main), the device it was timed on (processor and
    threads, :func:`attmask.core.environment.device_name`), its stored seconds (stalls left out)
    and its pretraining steps (0: not stored)."""

    table: str
    device: str
    seconds: float
    steps: int = 0


@dataclass(frozen=True)
class PendingCell:
    """An unfinished cell's table prefix ("" = main), the fraction of its pretraining left (1.0,
    or less for a cell in progress whose log says how far it got, :meth:`Position.left`) and, for
    a cell training here now, its recent steps per second (:attr:`Position.steps_per_second`)."""

    table: str
    left: float = 1.0
    pace: float | None = None


def estimate(timed: list[TimedCell], pending: list[PendingCell], device: str) -> Estimate:
    """Expected seconds of the ``pending`` cells, each its fraction left of the median time of the
    finished cells of its table, else of all finished cells, counting only cells timed on
    ``device`` when there are any: another processor, or another number of threads (two
    experiments side by side on one thread each), runs at another pace. A median, because one
    cell's stored time can be inflated (a run paused while it trained) and a mean would carry that
    into every pending cell. With no cell timed on ``device``, the times are divided by
    :func:`relative_speed` when cells run here now (a new machine can be twice as fast)."""
    here = [cell for cell in timed if cell.device == device]
    pool = here or timed
    if not pool:
        return Estimate(None, len(pending), 0)
    tables: dict[str, list[float]] = {}
    for cell in pool:
        tables.setdefault(cell.table, []).append(cell.seconds)
    medians = {table: statistics.median(times) for table, times in tables.items()}
    fallback = statistics.median(cell.seconds for cell in pool)
    seconds = sum(cell.left * medians.get(cell.table, fallback) for cell in pending)
    speed = None if here else relative_speed(pool, pending)
    return Estimate(seconds / (speed or 1.0), len(pending), len(pool), bool(here), speed=speed)


def relative_speed(timed: list[TimedCell], pending: list[PendingCell]) -> float | None:
    """The median, over cells training now, of their recent steps per second over the median pace
    (steps over stored seconds) of the timed cells of their table; None without such a pair. The
    stored seconds include the per-epoch monitors, the recent pace does not: a few percent
    optimistic, against a factor of two between machines."""
    paces: dict[str, list[float]] = {}
    for cell in timed:
        if cell.steps > 0 and cell.seconds > 0:
            paces.setdefault(cell.table, []).append(cell.steps / cell.seconds)
    ratios = [cell.pace / statistics.median(paces[cell.table]) for cell in pending if cell.pace and cell.table in paces]
    return statistics.median(ratios) if ratios else None


@dataclass(frozen=True)
class CellSelection:
    """Which cells a run computes: shell-style patterns on cell names (``--cells 'grid-*'``), all
    cells when there are none. A cell outside the selection is read when its result exists and
    skipped otherwise, so several machines can share one experiment: each runs a disjoint
    selection into its own folder, and copying their ``cells/*.json`` together gives the tables.

    Attributes:
        patterns: ``fnmatch`` patterns, matched case-sensitively against the whole name.
    """

    patterns: tuple[str, ...] = ()

    def __contains__(self, name: str) -> bool:
        return not self.patterns or any(fnmatchcase(name, pattern) for pattern in self.patterns)

    def check(self, names: list[str]) -> None:
        """Raise ``ValueError`` (one line) for a pattern that matches none of ``names``."""
        for pattern in self.patterns:
            if not any(fnmatchcase(name, pattern) for name in names):
                raise ValueError(
                    f"--cells {pattern!r} matches no cell of this experiment "
                    f"(`--status` lists the names, e.g. {names[-1]})"
                )


#: The result name of the raw-pixel row (``cells/pixels.json``).
PIXELS = "pixels"


@dataclass
class Finished:
    """The results on disk.

    Attributes:
        pixels: the raw-pixel row (None: not computed or switched off).
        inits: random-init results by table prefix ("" = main) and seed.
        results: pretrained cells' results by cell.
        plan: every cell of the experiment.
        failed: cells whose training failed in this run, with the error (empty when only read).
    """

    pixels: dict[str, Any] | None
    inits: dict[str, dict[int, dict]]
    results: dict[Cell, dict]
    plan: CellPlan
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """No result on disk at all (a report would be tables of dashes)."""
        return self.pixels is None and not any(self.inits.values()) and not self.results


def read_finished(folder: Path, plan: CellPlan, inits: list[InitCell], pixels: bool) -> Finished:
    """The results stored in ``folder`` (an experiment's ``cells/``) of the cells of ``plan``, the
    random-init evaluations ``inits`` and, when ``pixels``, the raw-pixel row; a file of a cell
    the experiment does not have (an old arm, another preset's cell) is not read."""
    pixels_path = folder / f"{PIXELS}.json"
    stored = json.loads(pixels_path.read_text()) if pixels and pixels_path.is_file() else None
    by_table: dict[str, dict[int, dict]] = {}
    for init in inits:
        path = folder / f"{init.name}.json"
        if path.is_file():
            by_table.setdefault(init.table, {})[init.seed] = json.loads(path.read_text())
    results = {
        cell: json.loads((folder / f"{cell.name}.json").read_text())
        for cell in plan.all()
        if (folder / f"{cell.name}.json").is_file()
    }
    return Finished(stored, by_table, results, plan)


def cell_lock(out: Path, name: str) -> Path:
    """The lock file of cell ``name`` in experiment folder ``out``, held by the process computing
    it; in ``runs/``, which holds what only this machine needs, beside the cell's run folder."""
    return out / "runs" / f"{name}.lock"


def cell_state(out: Path, name: str) -> str:
    """``done`` (its result is stored), ``running`` (a process holds its lock now), ``started``
    (a checkpoint, nobody on it) or ``pending``."""
    if (out / "cells" / f"{name}.json").is_file():
        return "done"
    if lock_holder(cell_lock(out, name)):
        return "running"
    if (out / "runs" / name / CHECKPOINT_NAME).is_file():
        return "started"
    return "pending"
