"""The cells an experiment expands to: one pretraining run per arm x seed x data fraction, in
the order they run (main table, extra tables, data sweep)."""

from __future__ import annotations

from dataclasses import dataclass

from attmask.experiments.config import ARMS, TABLES, ExperimentConfig, TableSpec


@dataclass(frozen=True)
class Cell:
    """One pretraining run: an arm, a seed and the training-set fraction.

    Attributes:
        arm: key of :data:`ARMS`.
        seed: ``train.seed`` of the run.
        subset: ``data.subset`` (fraction or count per class), None for the whole set.
        table: "" for the main table (and the data sweep), else the extra table's prefix
            (a value of :data:`TABLES`).
        extra: the extra table's pretraining overrides.
    """

    arm: str
    seed: int
    subset: float | int | None
    table: str = ""
    extra: tuple[str, ...] = ()

    @property
    def data(self) -> str:
        """``all`` for the whole training set, else the subset as written in the config."""
        return "all" if self.subset is None else str(self.subset)

    @property
    def name(self) -> str:
        """Folder name, e.g. ``attmask_high-s0-d0.05`` or ``dino-none-s1-dall``."""
        prefix = f"{self.table}-" if self.table else ""
        return f"{prefix}{self.arm}-s{self.seed}-d{self.data}"

    def label(self, epochs: int) -> str:
        """Progress line, e.g. ``dino AttMask-High, seed 1, data all, 13 epochs``."""
        table = f"{self.table} " if self.table else ""
        return f"{table}{ARMS[self.arm][0]}, seed {self.seed}, data {self.data}, {epochs} epochs"

    def overrides(self) -> list[str]:
        """Pretraining overrides that make this cell out of the shared recipe."""
        _, strategy, (low, high) = ARMS[self.arm]
        subset = "null" if self.subset is None else self.subset
        return [
            f"masking.strategy={strategy}",
            f"masking.ratio=[{low}, {high}]",
            f"train.seed={self.seed}",
            f"data.subset={subset}",
            *self.extra,
        ]


def main_fraction(fraction: float, main_subset: float | int | None) -> float | int | None:
    """The ``data.subset`` of a sweep fraction: the whole set (None) for 1.0 when the main
    table trains on the whole set, so that cell is not trained twice."""
    return None if fraction == 1.0 and main_subset is None else fraction


@dataclass
class CellPlan:
    """Every cell of an experiment, in run order.

    Attributes:
        main: the main table (seeds in the outer loop, so a stopped run has complete seeds).
        tables: extra tables by prefix (``dino``, ``grid``), seeds in the outer loop too.
        sweep: data-sweep cells not already in ``main``.
    """

    main: list[Cell]
    tables: dict[str, list[Cell]]
    sweep: list[Cell]

    def all(self) -> list[Cell]:
        """Every cell in run order: main, extra tables, sweep."""
        return [*self.main, *(cell for cells in self.tables.values() for cell in cells), *self.sweep]


def table_specs(config: ExperimentConfig) -> dict[str, TableSpec]:
    """The extra tables that have arms, by cell-name prefix."""
    specs = {prefix: getattr(config, name) for name, prefix in TABLES.items()}
    return {prefix: spec for prefix, spec in specs.items() if spec.arms}


def plan_cells(config: ExperimentConfig, main_subset: float | int | None) -> CellPlan:
    """The cells of ``config``; a sweep cell equal to a main cell is not repeated. Extra
    tables train on the main table's data."""
    main = [Cell(arm, seed, main_subset) for seed in config.seeds for arm in config.arms]
    tables = {
        prefix: [
            Cell(arm, seed, main_subset, prefix, tuple(spec.overrides)) for seed in spec.seeds for arm in spec.arms
        ]
        for prefix, spec in table_specs(config).items()
    }
    seen = set(main)
    sweep = []
    for seed in config.seeds[: config.fraction_seeds]:
        for fraction in config.fractions:
            for arm in config.fraction_arms:
                cell = Cell(arm, seed, main_fraction(fraction, main_subset))
                if cell not in seen:
                    seen.add(cell)
                    sweep.append(cell)
    return CellPlan(main, tables, sweep)
